// An agent in Go, which makes its system calls itself: the clock, a one-second sleep, a
// workspace read, `date +%s%N` as a subprocess (os/exec), randomness (crypto/rand),
// an LLM call with net/http and a file written. Served by the system-call floor under tapedeck run / replay.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	start := time.Now()
	fmt.Println("wall", start.UnixMilli())
	// Randomness: crypto/rand (getrandom). (Map order is the same in every replay, not always
	// the recording's: see map_order.go.)
	drawn := make([]byte, 8)
	rand.Read(drawn)
	fmt.Printf("random %x\n", drawn)
	tasks, err := os.ReadFile("tasks.txt")
	fmt.Println("tasks.txt:", len(tasks), err)
	time.Sleep(time.Second)
	fmt.Println("slept", time.Since(start).Milliseconds(), "ms")
	// A timer's deadline is the runtime's clock; time.Until and a Time's monotonic reading
	// ("m=+…", counted from the package's start) are the program's.
	<-time.After(20 * time.Millisecond)
	fmt.Println("until", time.Until(start.Add(time.Hour)), "now", time.Now())
	date, err := exec.Command("date", "+%s%N").Output()
	fmt.Println("date:", strings.TrimSpace(string(date)), err)
	body, _ := json.Marshal(map[string]any{"model": "gpt-4o-mini", "messages": []map[string]string{{"role": "user", "content": "Summarise the tasks"}}})
	request, _ := http.NewRequest("POST", os.Getenv("OPENAI_BASE_URL")+"/chat/completions", bytes.NewReader(body))
	request.Header.Set("Authorization", "Bearer "+os.Getenv("OPENAI_API_KEY"))
	request.Header.Set("Content-Type", "application/json")
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		fmt.Println("llm failed:", err)
		os.Exit(1)
	}
	answer, _ := io.ReadAll(response.Body)
	var parsed struct {
		Choices []struct{ Message struct{ Content string } }
	}
	json.Unmarshal(answer, &parsed)
	fmt.Println("llm:", parsed.Choices[0].Message.Content)
	os.WriteFile("output.txt", []byte(parsed.Choices[0].Message.Content+"\n"), 0o644)
	fmt.Println("took", time.Since(start).Milliseconds(), "ms")
}
