package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	authFailures prometheus.Counter
	opDuration   *prometheus.HistogramVec
	opsInFlight  prometheus.Gauge
	bmcRequests  prometheus.Counter
	bmcErrors    *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metal_api_requests_total", Help: "API requests by route and HTTP status.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "metal_api_request_duration_seconds", Help: "API request latency by route (long polls included).",
		}, []string{"route"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metal_api_auth_failures_total", Help: "API requests refused for a missing or invalid token.",
		}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "metal_operation_duration_seconds",
			Help:    "Duration of long-running operations (provision, deprovision, power) by kind and final state.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600},
		}, []string{"kind", "state"}),
		opsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "metal_operations_in_flight", Help: "Long-running operations in progress.",
		}),
		bmcRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metal_bmc_requests_total", Help: "HTTP requests sent to BMCs.",
		}),
		bmcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metal_bmc_errors_total", Help: "BMC operations that failed, by error code.",
		}, []string{"code"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.authFailures, m.opDuration, m.opsInFlight, m.bmcRequests, m.bmcErrors} {
		reg.MustRegister(c)
	}
	// Process and Go metrics, unless the caller registered them already.
	_ = reg.Register(collectors.NewGoCollector())
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
