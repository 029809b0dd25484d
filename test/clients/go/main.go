// A legacy-style stoka client: Go net/http, proxy taken from HTTP_PROXY/HTTPS_PROXY.
//
// usage: stoka-go BASE_URL PREFIX WALLET_ADDRESS (the common scenario), or
// stoka-go --one METHOD URL (one request).
// Prints one JSON line: the result of each step.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type result struct {
	Step    string  `json:"step"`
	Status  int     `json:"status"`
	Paid    *string `json:"paid"`
	Tx      *string `json:"tx"`
	BodyB64 string  `json:"body_b64"`
}

func header(h http.Header, name string) *string {
	if v := h.Get(name); v != "" {
		return &v
	}
	return nil
}

func fetch(client *http.Client, name, method, url string, headers map[string]string, payload []byte) result {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	data, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return result{name, res.StatusCode, header(res.Header, "X-Stoka-Proxy-Paid"), header(res.Header, "X-Stoka-Proxy-Tx"), base64.StdEncoding.EncodeToString(data)}
}

func main() {
	client := &http.Client{Timeout: 30 * time.Second}
	if os.Args[1] == "--one" {
		enc, _ := json.Marshal([]result{fetch(client, "one", os.Args[2], os.Args[3], nil, nil)})
		fmt.Println(string(enc))
		return
	}
	base, prefix, wallet := os.Args[1], os.Args[2], os.Args[3]
	type step struct {
		name, method, path string
		headers            map[string]string
		body               []byte
	}
	steps := []step{
		{"manifest", "GET", "/.well-known/stoka.json", nil, nil},
		{"store", "POST", "/v1/store", map[string]string{"X-Stoka-Key": prefix + "-blob", "Content-Type": "application/octet-stream"}, bytes.Repeat([]byte("a"), 42)},
		{"retrieve", "GET", "/v1/retrieve/" + prefix + "-blob", nil, nil},
		{"update", "PUT", "/v1/object/" + prefix + "-blob", map[string]string{"X-Stoka-TTL-Seconds": "86400"}, []byte("new")},
		{"push", "POST", "/v1/queue/" + wallet + "/" + prefix + "-topic/push", nil, []byte("hello mailbox")},
		{"pop", "POST", "/v1/queue/" + prefix + "-topic/pop", nil, nil},
		{"delete", "DELETE", "/v1/object/" + prefix + "-blob", nil, nil},
	}
	out := []result{}
	for _, s := range steps {
		out = append(out, fetch(client, s.name, s.method, strings.TrimRight(base, "/")+s.path, s.headers, s.body))
	}
	enc, _ := json.Marshal(out)
	fmt.Println(string(enc))
}
