package testenv

import (
	"fmt"
	"net"
	"sync"
	"testing"
)

// picked is every port PickAddr handed out in this process: the kernel may
// offer a port again once its listener is closed, and a test that gives two
// picked addresses to one process (HTTP_ADDR and METRICS_ADDR) must not get
// the same one twice.
var picked struct {
	sync.Mutex
	ports map[int]bool
}

// pickAttempts bounds the tries for a port not handed out before.
const pickAttempts = 64

// PickAddr returns a loopback address whose port is free right now and was
// not returned before by this process.
func PickAddr() (string, error) {
	picked.Lock()
	defer picked.Unlock()
	if picked.ports == nil {
		picked.ports = make(map[int]bool)
	}
	for range pickAttempts {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("find a free loopback port: %w", err)
		}
		addr := ln.Addr().(*net.TCPAddr)
		ln.Close()
		if !picked.ports[addr.Port] {
			picked.ports[addr.Port] = true
			return addr.String(), nil
		}
	}
	return "", fmt.Errorf("find a free loopback port: %d tries gave ports handed out already", pickAttempts)
}

// FreeAddr is PickAddr for a test.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := PickAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
