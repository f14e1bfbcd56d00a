// A Go program's everyday effects without a sleep, for bench/floor.sh: 2,000 time.Now() calls,
// 200 small workspace files read, 5 subprocesses, 20 files written.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	var last time.Time
	for i := 0; i < 2000; i++ {
		last = time.Now()
	}
	total := 0
	for i := 0; i < 200; i++ {
		bytes, _ := os.ReadFile(fmt.Sprintf("files/f%d", i))
		total += len(bytes)
	}
	for i := 0; i < 5; i++ {
		exec.Command("true").Run()
	}
	for i := 0; i < 20; i++ {
		os.WriteFile(fmt.Sprintf("out%d.txt", i), []byte("written\n"), 0o644)
	}
	fmt.Println(total, last.Year() > 2000)
}
