// Package logging sets up the host's structured log (log/slog) and bridges
// go-plugin's hclog output into it, so plugin lines appear in the host log
// tagged with the plugin's name.
package logging

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"

	hclog "github.com/hashicorp/go-hclog"
)

// LevelTrace is below slog.LevelDebug, for go-plugin's trace lines.
const LevelTrace = slog.Level(-8)

// ParseLevel maps a config log level to a slog level.
func ParseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// New returns the host's logger writing text lines to w.
func New(w io.Writer, level string) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: ParseLevel(level)}))
}

// HCLog adapts l to hclog.Logger.
func HCLog(l *slog.Logger) hclog.Logger {
	return &hcAdapter{l: l}
}

type hcAdapter struct {
	l    *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*hcAdapter)(nil)

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return LevelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *hcAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv := toSlog(level)
	if !a.l.Enabled(context.Background(), lv) {
		return
	}
	all := make([]any, 0, len(a.args)+len(args)+2)
	if a.name != "" {
		all = append(all, "logger", a.name)
	}
	all = append(all, a.args...)
	// hclog args are key/value pairs; an odd trailing value is kept as is.
	for i := 0; i < len(args); i += 2 {
		if i+1 < len(args) {
			key := fmt.Sprint(args[i])
			if key == "plugin" {
				// go-plugin passes the binary's path as "plugin"; the host
				// tags lines with the plugin's configured name under that key.
				key = "plugin_path"
			}
			all = append(all, key, args[i+1])
		} else {
			all = append(all, "extra", args[i])
		}
	}
	a.l.Log(context.Background(), lv, msg, all...)
}

func (a *hcAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hcAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hcAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hcAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hcAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hcAdapter) enabled(l slog.Level) bool { return a.l.Enabled(context.Background(), l) }
func (a *hcAdapter) IsTrace() bool             { return a.enabled(LevelTrace) }
func (a *hcAdapter) IsDebug() bool             { return a.enabled(slog.LevelDebug) }
func (a *hcAdapter) IsInfo() bool              { return a.enabled(slog.LevelInfo) }
func (a *hcAdapter) IsWarn() bool              { return a.enabled(slog.LevelWarn) }
func (a *hcAdapter) IsError() bool             { return a.enabled(slog.LevelError) }
func (a *hcAdapter) ImpliedArgs() []any        { return a.args }
func (a *hcAdapter) Name() string              { return a.name }
func (a *hcAdapter) GetLevel() hclog.Level {
	switch {
	case a.IsTrace():
		return hclog.Trace
	case a.IsDebug():
		return hclog.Debug
	case a.IsInfo():
		return hclog.Info
	case a.IsWarn():
		return hclog.Warn
	}
	return hclog.Error
}

// SetLevel is a no-op: the host's level applies.
func (a *hcAdapter) SetLevel(hclog.Level) {}

func (a *hcAdapter) With(args ...any) hclog.Logger {
	return &hcAdapter{l: a.l, name: a.name, args: append(append([]any(nil), a.args...), args...)}
}

func (a *hcAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return &hcAdapter{l: a.l, name: name, args: a.args}
}

func (a *hcAdapter) ResetNamed(name string) hclog.Logger {
	return &hcAdapter{l: a.l, name: name, args: a.args}
}

func (a *hcAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(a.l.Handler(), slog.LevelInfo)
}

func (a *hcAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer { return os.Stderr }
