// A Go program dialing a loopback port (the floor end-to-end test builds it with and without cgo).
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	conn, err := net.Dial("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	conn.Close()
	fmt.Println("dial: connected")
}
