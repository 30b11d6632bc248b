package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/berth-cri/berth/host/cri"
	"github.com/berth-cri/berth/host/logging"
	"github.com/berth-cri/berth/host/plugins"
	"github.com/berth-cri/berth/host/state"
	"github.com/berth-cri/berth/internal/version"
	"github.com/berth-cri/berth/sdk"
)

// maxMsgSize bounds CRI messages; kubelet's own limit is 16 MiB.
const maxMsgSize = 16 << 20

func cmdServe(args []string) error {
	cfg, err := parseAndLoad("serve", args, nil)
	if err != nil {
		return err
	}
	log := logging.New(os.Stderr, cfg.Host.LogLevel)
	log.Info("starting berth", "version", version.Version, "config", cfg.Path, "listen", cfg.Host.Listen)

	for _, d := range []string{cfg.Host.Root, cfg.Host.RunRoot, filepath.Dir(cfg.Host.Listen)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	// One daemon per runroot: a second one would fight over plugins and state.
	lock, err := os.OpenFile(filepath.Join(cfg.Host.RunRoot, "berth.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("another berth is running with runroot %s: %w", cfg.Host.RunRoot, err)
	}

	store, err := state.Open(filepath.Join(cfg.Host.Root, "berth.db"))
	if err != nil {
		return err
	}
	defer store.Close()

	mgr := plugins.New(cfg, log)
	if err := mgr.Start(context.Background()); err != nil {
		// Keep serving: the plugin is retried in the background and Status
		// says why the runtime is not ready.
		log.Error("a plugin failed to start; retrying in the background", "error", err)
	}
	defer mgr.Stop()

	lis, err := listenUnix(cfg.Host.Listen)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ChainUnaryInterceptor(cri.UnaryInterceptor(log)),
		grpc.ChainStreamInterceptor(cri.StreamInterceptor(log)),
	)
	criServer := cri.New(cfg, mgr, store, log)
	criServer.Recover(context.Background())
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go criServer.WatchExits(watchCtx)
	criServer.Register(srv)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	log.Info("CRI server listening", "socket", cfg.Host.Listen)
	// Start-up touched much of the binary; the daemon mostly idles.
	sdk.TrimExecutablePages()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		log.Info("stopping", "signal", sig.String())
	case err := <-serveErr:
		log.Error("CRI server failed", "error", err)
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		log.Warn("CRI calls still running after 5s; closing them")
		srv.Stop()
	}
	_ = os.Remove(cfg.Host.Listen)
	log.Info("stopped; containers keep running")
	return nil
}

// listenUnix listens on path, replacing a socket file left by a daemon that
// died, but never one that still answers.
func listenUnix(path string) (net.Listener, error) {
	if _, err := os.Lstat(path); err == nil {
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("restrict socket: %w", err)
	}
	return lis, nil
}
