//go:build !nohttpboot

package main

import (
	"context"
	"net/http"

	"github.com/composable-metal/terraform-provider-metal/internal/boot/artifact"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/httpboot"
	"github.com/composable-metal/terraform-provider-metal/internal/boot/render"
)

// bootBackend knows one machine, whose disk image is the benchmark artifact.
type bootBackend struct {
	token string
	m     httpboot.Machine
	cnt   *httpCounters
}

func (b *bootBackend) MachineByToken(_ context.Context, token string) (*httpboot.Machine, error) {
	if !httpboot.TokensEqual(token, b.token) {
		return nil, httpboot.ErrInvalidToken
	}
	m := b.m
	return &m, nil
}

func (b *bootBackend) Record(_ context.Context, _ string, e httpboot.Event) {
	b.cnt.requests.Add(1)
	b.cnt.bytes.Add(uint64(e.Bytes))
	if e.Status != http.StatusOK {
		b.cnt.non200.Add(1)
	}
}

func (b *bootBackend) MarkProvisioned(context.Context, string) error { return nil }

func init() {
	handlerName = "httpboot"
	artifactHandler = func(cache *artifact.Cache, sum, token string, cnt *httpCounters) (http.Handler, string, error) {
		be := &bootBackend{token: token, cnt: cnt, m: httpboot.Machine{
			ID:   "bench",
			Vars: render.MachineVars{Image: render.Image{ImageSHA256: sum}},
		}}
		h, err := httpboot.New(httpboot.Config{Backend: be, Artifacts: cache})
		if err != nil {
			return nil, "", err
		}
		return h, "/boot/" + token + "/" + render.PathImage, nil
	}
}
