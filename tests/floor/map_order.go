// Ranges over a map on the main goroutine, then on four others. Go starts each iteration at a
// random place (its thread's fastrand, seeded from AT_RANDOM, the thread's number and the CPU's
// timestamp counter), so natively every run prints another order; under tapedeck every replay
// of one tape prints the same first line. After it, the scheduler decides which thread draws.
package main

import (
	"fmt"
	"strings"
	"sync"
)

func keys(m map[string]int) string {
	var order []string
	for key := range m {
		order = append(order, key)
	}
	return strings.Join(order, " ")
}

func main() {
	m := map[string]int{}
	for i := 0; i < 16; i++ {
		m[fmt.Sprintf("k%d", i)] = i
	}
	fmt.Println("main:", keys(m))
	var wg sync.WaitGroup
	seen := make([]string, 4)
	for g := range seen {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			seen[g] = keys(m)
		}(g)
	}
	wg.Wait()
	for g, order := range seen {
		fmt.Println("goroutine", g, order)
	}
	fmt.Println("main again:", keys(m))
}
