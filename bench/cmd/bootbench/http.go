package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
)

// httpCounters are filled by the artifact handler (httpboot's Record
// callback, or the plain fallback).
type httpCounters struct {
	requests, bytes, non200 atomic.Uint64
}

// artifactHandler builds the handler that serves the artifact with sum from
// cache under the returned URL path. It is httpboot's real handler unless
// built with -tags nohttpboot (see http_plain.go).
var artifactHandler func(cache *artifact.Cache, sum, token string, cnt *httpCounters) (http.Handler, string, error)

// handlerName says which implementation artifactHandler is.
var handlerName string

func runHTTP(args []string) error {
	fs := flag.NewFlagSet("http", flag.ExitOnError)
	var c common
	c.register(fs)
	listen := fs.String("listen", "127.0.0.1:8088", "TCP address to serve HTTP on")
	file := fs.String("file", "", "file to import into the artifact cache and serve (required)")
	sum := fs.String("sha256", "", "the file's sha256 (optional; lets a warm cache skip the import)")
	cacheDir := fs.String("cache", "", "artifact cache directory (required)")
	token := fs.String("token", "benchTOKEN-0123456789abcdef", "provisioning token in the URL")
	_ = fs.Parse(args)
	if *file == "" || *cacheDir == "" {
		return errors.New("-file and -cache are required")
	}
	abs, err := filepath.Abs(*file)
	if err != nil {
		return err
	}
	cache, err := artifact.New(*cacheDir, artifact.Options{})
	if err != nil {
		return err
	}
	art, err := cache.Ensure(context.Background(), artifact.Source{URL: "file://" + abs, SHA256: *sum})
	if err != nil {
		return err
	}
	var cnt httpCounters
	h, path, err := artifactHandler(cache, art.SHA256, *token, &cnt)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("READY http %s handler=%s size=%d url=http://%s%s\n", ln.Addr(), handlerName, art.Size, ln.Addr(), path)
	began := time.Now()
	err = c.run(func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		return nil
	})
	fmt.Printf("STATS http uptime_s=%.1f handler=%s requests=%d bytes=%d non200=%d\n",
		time.Since(began).Seconds(), handlerName, cnt.requests.Load(), cnt.bytes.Load(), cnt.non200.Load())
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
