package redfish

import (
	"sync"
	"sync/atomic"
)

// quirks is what we learned about one BMC's behaviour. It is kept for the
// life of the process so later sessions to the same BMC skip the probing
// (each probe is a wasted request).
type quirks struct {
	// expandLevels is the deepest system $expand the BMC honoured (-1 unknown).
	expandLevels atomic.Int32
	// minimalBoot: the BMC refuses BootSourceOverrideMode in a boot PATCH.
	minimalBoot atomic.Bool
}

var learned sync.Map // BaseURL → *quirks

func quirksFor(baseURL string) *quirks {
	if q, ok := learned.Load(baseURL); ok {
		return q.(*quirks) //nolint:forcetypeassert // only *quirks is stored
	}
	q := &quirks{}
	q.expandLevels.Store(-1)
	actual, _ := learned.LoadOrStore(baseURL, q)
	return actual.(*quirks) //nolint:forcetypeassert // only *quirks is stored
}
