package kube

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
)

// RetryLimit bounds how long one API call of u7s is tried again: longer than a control plane
// takes to reboot or to restart its API server, so that a call made while one of several is
// down goes through another.
const RetryLimit = 2 * time.Minute

// Retrying makes every call of clients of cfg try again when it failed before an answer came
// (connection refused or reset, EOF: a balancer's dead backend, an API server restarting) or was
// answered 429, 502, 503 or 504 (or 500 with one of etcd's transient errors), with backoff, up
// to RetryLimit: what kubeadm does for its own calls. A write retried after it had in fact succeeded gets the API's answer to a repeat (the
// same object for an apply, a patch or an update of the same content, AlreadyExists for a
// create): the callers take AlreadyExists as done. Returns cfg.
func Retrying(cfg *rest.Config) *rest.Config {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &retryTransport{next: rt, limit: RetryLimit, first: 250 * time.Millisecond}
	})
	return cfg
}

type retryTransport struct {
	next  http.RoundTripper
	limit time.Duration
	first time.Duration // the first pause; each next one doubles, up to 5 s
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline := time.Now().Add(t.limit)
	pause := t.first
	for {
		resp, err := t.next.RoundTrip(req)
		if !retryable(resp, err) && !etcdTransient(resp) || req.Body != nil && req.GetBody == nil || time.Now().Add(pause).After(deadline) {
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if serr := sleep(req.Context(), pause); serr != nil {
			if err != nil {
				return nil, err
			}
			return nil, serr
		}
		pause = min(2*pause, 5*time.Second)
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, gerr
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// retryable: no answer because the connection failed, or an answer that says "not now".
func retryable(resp *http.Response, err error) bool {
	if err != nil {
		return utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// etcdTransientErrors are etcd's answers that say "not now": the API server passes them on as
// a 500. A control plane joining under load met "etcdserver: request timed out" once, on the
// patch of its own Node right after its etcd member joined, and its whole join was undone.
var etcdTransientErrors = []string{
	"etcdserver: request timed out",
	"etcdserver: leader changed",
	"etcdserver: no leader",
	"etcdserver: too many requests",
}

// etcdTransient: a 500 whose message is one of etcdTransientErrors. The body read to tell is
// put back for the caller when it is not.
func etcdTransient(resp *http.Response) bool {
	if resp == nil || resp.StatusCode != http.StatusInternalServerError {
		return false
	}
	head, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	if err != nil {
		return false
	}
	for _, e := range etcdTransientErrors {
		if bytes.Contains(head, []byte(e)) {
			return true
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
