package conmon

import (
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// maxLine is the longest log line written as one record; longer lines are
// split into partial (P) records, as CRI-O and containerd do.
const maxLine = 16 * 1024

// logWriter writes the CRI log format to a file, one record per write.
type logWriter struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func newLogWriter(path string) (*logWriter, error) {
	w := &logWriter{path: path}
	if path == "" {
		return w, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, err
	}
	w.f = f
	return w, nil
}

// reopen reopens the file (after the kubelet rotated it).
func (w *logWriter) reopen() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.path == "" {
		return
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return
	}
	if w.f != nil {
		w.f.Close()
	}
	w.f = f
}

func (w *logWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Sync()
		w.f.Close()
		w.f = nil
	}
}

func (w *logWriter) record(stream string, partial bool, line []byte) {
	tag := "F"
	if partial {
		tag = "P"
	}
	buf := make([]byte, 0, len(line)+64)
	buf = time.Now().UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, ' ')
	buf = append(buf, stream...)
	buf = append(buf, ' ')
	buf = append(buf, tag...)
	buf = append(buf, ' ')
	buf = append(buf, line...)
	buf = append(buf, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		_, _ = w.f.Write(buf)
	}
}

// copy reads a stream until EOF and writes its lines as records.
func (w *logWriter) copy(r io.Reader, stream string) {
	buf := make([]byte, 0, maxLine)
	chunk := make([]byte, 32*1024)
	for {
		n, err := r.Read(chunk)
		data := chunk[:n]
		for len(data) > 0 {
			i := indexByte(data, '\n')
			if i >= 0 {
				if len(buf)+i > maxLine {
					// Flush what fits as partial records first.
					take := maxLine - len(buf)
					buf = append(buf, data[:take]...)
					w.record(stream, true, buf)
					buf = buf[:0]
					data = data[take:]
					continue
				}
				buf = append(buf, data[:i]...)
				w.record(stream, false, buf)
				buf = buf[:0]
				data = data[i+1:]
				continue
			}
			room := maxLine - len(buf)
			if len(data) < room {
				buf = append(buf, data...)
				break
			}
			buf = append(buf, data[:room]...)
			w.record(stream, true, buf)
			buf = buf[:0]
			data = data[room:]
		}
		if err != nil {
			if len(buf) > 0 {
				// The stream ended mid-line: a final, unterminated line.
				w.record(stream, false, buf)
			}
			return
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
