// Go net/http with the cgo resolver (built with CGO_ENABLED=1 -tags netcgo): GET URL with the
// target's MATRIX_GREETING as a header. Usage: matrix-go http://HOST:PORT/go
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	greeting := os.Getenv("MATRIX_GREETING")
	if greeting == "" {
		greeting = "unset"
	}
	req, err := http.NewRequest("GET", os.Args[1], nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	req.Header.Set("X-Greeting", greeting)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	res, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Printf("%d %s\n", res.StatusCode, strings.TrimSpace(string(body)))
}
