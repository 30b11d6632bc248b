package images

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
)

// Auth is the CRI AuthConfig of a pull.
type Auth struct {
	Username, Password, Auth, ServerAddress, IdentityToken, RegistryToken string
}

func (a *Auth) empty() bool {
	return a == nil || (a.Username == "" && a.Password == "" && a.Auth == "" && a.IdentityToken == "" && a.RegistryToken == "")
}

// apply sets the credentials on a copy of the system context.
func (a *Auth) apply(sys *types.SystemContext) error {
	if a.empty() {
		return nil
	}
	user, pass := a.Username, a.Password
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return fmt.Errorf("%w: auth.auth is not base64: %v", ErrInvalid, err)
		}
		var ok bool
		user, pass, ok = strings.Cut(string(raw), ":")
		if !ok {
			return fmt.Errorf("%w: auth.auth does not decode to user:password", ErrInvalid)
		}
	}
	if a.RegistryToken != "" {
		sys.DockerBearerRegistryToken = a.RegistryToken
	}
	if user != "" || pass != "" || a.IdentityToken != "" {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: user, Password: pass, IdentityToken: a.IdentityToken}
	}
	return nil
}

// fingerprint distinguishes pulls with different credentials, so a pull is
// only shared by callers presenting the same ones.
func (a *Auth) fingerprint() string {
	if a.empty() {
		return ""
	}
	h := sha256.Sum256([]byte(strings.Join([]string{a.Username, a.Password, a.Auth, a.IdentityToken, a.RegistryToken}, "\x00")))
	return hex.EncodeToString(h[:8])
}

// ErrInvalid marks errors caused by the request itself.
var ErrInvalid = errors.New("invalid argument")

// ErrStalled is the cause of a pull cancelled for making no progress.
var ErrStalled = errors.New("image pull made no progress")

// Pull pulls name (short names resolve through registries.conf) and returns
// the image ID. Concurrent pulls of one reference with the same credentials
// share one download. The download is not tied to a single caller: a caller
// that gives up does not cancel it for the others; only a stall does.
func (s *Service) Pull(ctx context.Context, name string, auth *Auth) (string, error) {
	resolved, err := shortnames.Resolve(s.sys, name)
	if err != nil {
		return "", fmt.Errorf("%w: resolve %q: %v", ErrInvalid, name, err)
	}
	sys := *s.sys
	if err := auth.apply(&sys); err != nil {
		return "", err
	}
	var errs []error
	for _, cand := range resolved.PullCandidates {
		sys := sys
		if s.opts.PlainHTTPLoopback && isLoopback(reference.Domain(cand.Value)) {
			sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		}
		id, err := s.pullShared(ctx, cand.Value, &sys, auth.fingerprint())
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return "", errs[0]
	}
	return "", resolved.FormatPullErrors(errs)
}

func (s *Service) pullShared(ctx context.Context, named reference.Named, sys *types.SystemContext, authKey string) (string, error) {
	ch := s.pulls.DoChan(named.String()+"\x00"+authKey, func() (any, error) {
		return s.pullOne(named, sys)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", fmt.Errorf("pull %s: %w", named, ctx.Err())
	}
}

// pullOne copies one fully qualified reference into the store.
func (s *Service) pullOne(named reference.Named, sys *types.SystemContext) (string, error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	srcRef, err := docker.NewReference(named)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	destRef, err := istorage.Transport.NewStoreReference(s.store, named, "")
	if err != nil {
		return "", fmt.Errorf("reference %s in the store: %w", named, err)
	}
	policyCtx, err := signature.NewPolicyContext(s.policy)
	if err != nil {
		return "", fmt.Errorf("signature policy: %w", err)
	}
	defer policyCtx.Destroy() //nolint:errcheck

	progress := make(chan types.ProgressProperties, 64)
	watch := newPullWatch(s, named.String(), cancel)
	done := make(chan struct{})
	go func() { watch.run(progress); close(done) }()

	start := time.Now()
	s.log.Info("pulling image", "image", named.String())
	_, err = copy.Image(ctx, policyCtx, destRef, srcRef, &copy.Options{
		SourceCtx:        sys,
		DestinationCtx:   sys,
		ReportWriter:     io.Discard,
		ProgressInterval: 500 * time.Millisecond,
		Progress:         progress,
	})
	close(progress)
	<-done
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrStalled) {
			err = fmt.Errorf("%w for %v (bytes so far: %d): %v", ErrStalled, s.opts.PullProgressTimeout, watch.bytes.Load(), err)
		}
		s.log.Warn("image pull failed", "image", named.String(), "error", err)
		return "", fmt.Errorf("pull %s: %w", named, err)
	}
	img, err := istorage.Transport.GetStoreImage(s.store, destRef)
	if err != nil {
		return "", fmt.Errorf("find pulled image %s: %w", named, err)
	}
	s.invalidateFs()
	s.log.Info("pulled image", "image", named.String(), "id", img.ID, "bytes", watch.bytes.Load(), "duration", time.Since(start).Round(time.Millisecond))
	return img.ID, nil
}

// pullWatch logs a pull's progress at a sane rate and cancels it when no
// byte moves for the progress timeout.
type pullWatch struct {
	s      *Service
	image  string
	cancel context.CancelCauseFunc
	bytes  atomic.Uint64
}

func newPullWatch(s *Service, image string, cancel context.CancelCauseFunc) *pullWatch {
	return &pullWatch{s: s, image: image, cancel: cancel}
}

func (w *pullWatch) run(progress <-chan types.ProgressProperties) {
	var (
		layers, done int
		offsets      = map[string]uint64{}
		last         = time.Now()
		lastLog      = time.Now()
		tick         = time.NewTicker(250 * time.Millisecond)
		timeout      = w.s.opts.PullProgressTimeout
	)
	defer tick.Stop()
	for {
		select {
		case p, ok := <-progress:
			if !ok {
				return
			}
			key := p.Artifact.Digest.String()
			switch p.Event {
			case types.ProgressEventNewArtifact:
				layers++
				last = time.Now()
			case types.ProgressEventRead:
				if p.Offset != offsets[key] {
					w.bytes.Add(p.Offset - offsets[key])
					offsets[key] = p.Offset
					last = time.Now()
				}
			case types.ProgressEventDone, types.ProgressEventSkipped:
				done++
				if p.Offset > offsets[key] {
					w.bytes.Add(p.Offset - offsets[key])
					offsets[key] = p.Offset
				}
				last = time.Now()
			}
		case <-tick.C:
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			w.s.log.Info("image pull progress", "image", w.image, "blobs_done", done, "blobs_started", layers, "bytes", w.bytes.Load())
		}
		if timeout > 0 && time.Since(last) > timeout {
			w.cancel(ErrStalled)
			// Keep draining until copy.Image returns and closes the channel.
			timeout = 0
		}
	}
}

// isLoopback reports whether a registry host[:port] is on this node.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
