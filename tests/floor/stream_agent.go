// A Go agent that streams an LLM answer (net/http, server-sent events) and prints, for every
// event, how long after its start it came (time.Since). Under the floor no preload announces the
// call: the replay cuts the clock at the call's record, as the recording's tape does, so each
// event's time replays as recorded.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	start := time.Now()
	body := []byte(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Plan the day"}]}`)
	request, _ := http.NewRequest("POST", os.Getenv("OPENAI_BASE_URL")+"/chat/completions", bytes.NewReader(body))
	request.Header.Set("Content-Type", "application/json")
	request.Header.Set("Authorization", "Bearer "+os.Getenv("OPENAI_API_KEY"))
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		fmt.Println("llm failed:", err)
		os.Exit(1)
	}
	fmt.Println("headers after", time.Since(start).Milliseconds(), "ms")
	events := bufio.NewScanner(response.Body)
	n := 0
	for events.Scan() {
		if line := events.Text(); strings.HasPrefix(line, "data:") {
			n++
			fmt.Printf("event %d after %d ms: %.48s\n", n, time.Since(start).Milliseconds(), line)
		}
	}
	fmt.Println("done after", time.Since(start))
}
