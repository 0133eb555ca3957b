package testenv

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// tailBytes is how much of a process's output goes into an error message.
const tailBytes = 4000

// output is where a process writes: memory, or a log file handed to it
// directly so that no copying goroutine sits between them.
type output struct {
	mem  *syncBuffer
	file *os.File
}

func newOutput(path string) (output, error) {
	if path == "" {
		return output{mem: &syncBuffer{}}, nil
	}
	f, err := os.Create(path)
	return output{file: f}, err
}

func (o output) writer() io.Writer {
	if o.file != nil {
		return o.file
	}
	return o.mem
}

// close closes the log file once the process has exited.
func (o output) close() {
	if o.file != nil {
		o.file.Close()
	}
}

func (o output) String() string {
	if o.file == nil {
		return o.mem.String()
	}
	return fileTail(o.file.Name())
}

// fileTail is the last tailBytes of the file at path, read without reading
// the rest: a bench's log can be large.
func fileTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	b := make([]byte, min(fi.Size(), tailBytes))
	n, err := f.ReadAt(b, fi.Size()-int64(len(b)))
	if err != nil && err != io.EOF {
		return err.Error()
	}
	return string(b[:n])
}

// tail is the end of the output, for error messages.
func (o output) tail() string {
	s := o.String()
	return s[max(0, len(s)-tailBytes):]
}

// syncBuffer is a bytes.Buffer for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
