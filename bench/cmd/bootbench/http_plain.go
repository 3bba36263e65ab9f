//go:build nohttpboot

package main

import (
	"net/http"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
)

// Fallback for when internal/boot/httpboot does not build: the same
// mechanism httpboot uses (artifact.Cache.Open + http.ServeContent), without
// token checks. Figures from it are labelled handler=servecontent.
func init() {
	handlerName = "servecontent"
	artifactHandler = func(cache *artifact.Cache, sum, token string, cnt *httpCounters) (http.Handler, string, error) {
		path := "/boot/" + token + "/image"
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			f, err := cache.Open(sum)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			http.ServeContent(w, r, "", fi.ModTime(), f)
			cnt.requests.Add(1)
			cnt.bytes.Add(uint64(fi.Size()))
		}), path, nil
	}
}
