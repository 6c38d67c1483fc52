package kube

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// A balancer's dead backend: the connection closes before any answer. A create through a
// Retrying client goes through on the third try with its body intact.
func TestRetryingCreate(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch calls.Add(1) {
		case 1, 2:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		if !strings.Contains(string(body), `"name":"key"`) {
			t.Errorf("the retried request lost its body: %q", body)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	cs, err := kubernetes.NewForConfig(retryingFast(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{ContentType: "application/json"}}))
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "key"}}
	if _, err := cs.CoreV1().ConfigMaps("kube-system").Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create through two dropped connections: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

// What is retried: 429 and the gateway errors; never an answer that is final (500, 404, 409).
func TestRetryingStatus(t *testing.T) {
	for _, tc := range []struct {
		status int
		calls  int32
	}{
		{http.StatusServiceUnavailable, 2},
		{http.StatusTooManyRequests, 2},
		{http.StatusBadGateway, 2},
		{http.StatusInternalServerError, 1},
		{http.StatusConflict, 1},
		{http.StatusNotFound, 1},
	} {
		if got, _ := firstAnswer(t, tc.status, ""); got != tc.calls {
			t.Errorf("answer %d: %d calls, want %d", tc.status, got, tc.calls)
		}
	}
}

// firstAnswer makes a PATCH through a retryTransport to a server that answers status and body
// first and 200 after: the calls the server got, and the body the caller read.
func firstAnswer(t *testing.T, status int, body string) (int32, string) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	tr := &retryTransport{next: http.DefaultTransport, limit: time.Minute, first: time.Millisecond}
	req, _ := http.NewRequest(http.MethodPatch, srv.URL, strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return calls.Load(), string(got)
}

// A 500 with etcd's "request timed out" is tried again; another 500 is final, and its caller
// still reads its whole message.
func TestRetryingEtcdTransient(t *testing.T) {
	for _, tc := range []struct {
		msg   string
		calls int32
	}{
		{"etcdserver: request timed out", 2},
		{"etcdserver: leader changed", 2},
		{"some other failure", 1},
	} {
		body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"` + tc.msg + `","code":500}`
		n, got := firstAnswer(t, http.StatusInternalServerError, body)
		if n != tc.calls {
			t.Errorf("500 %q: %d calls, want %d", tc.msg, n, tc.calls)
		}
		if tc.calls == 1 && got != body {
			t.Errorf("500 %q: the caller read %q, want the whole answer", tc.msg, got)
		}
	}
}

// The overall limit holds: a backend that never answers is given up on, with its error.
func TestRetryingLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tr := &retryTransport{next: http.DefaultTransport, limit: 200 * time.Millisecond, first: 20 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || time.Since(start) > 2*time.Second {
		t.Errorf("got %d after %s, want the 503 within the limit", resp.StatusCode, time.Since(start))
	}
}

func retryingFast(cfg *rest.Config) *rest.Config {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &retryTransport{next: rt, limit: time.Minute, first: time.Millisecond}
	})
	return cfg
}
