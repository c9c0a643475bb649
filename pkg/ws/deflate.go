package ws

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DeflateResponse is the Sec-WebSocket-Extensions value a server answers
// an accepted permessage-deflate offer with (RFC 7692): neither side keeps
// its compression context between messages, so every message is
// compressed on its own and one compressed frame can be written to any
// number of connections.
const DeflateResponse = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateTail is the empty stored block a sync flush ends with; RFC 7692
// strips it from each message and the receiver appends it back.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// AcceptDeflate reports whether one of the permessage-deflate offers in a
// raw Sec-WebSocket-Extensions value can be answered with DeflateResponse:
// an offer qualifies when its parameters are among
// server_no_context_takeover, client_no_context_takeover,
// client_max_window_bits (any value) and server_max_window_bits=15 (the
// server compresses with a 32 KiB window, so a smaller one is declined).
func AcceptDeflate(extensions string) bool {
	for _, offer := range strings.Split(extensions, ",") {
		params := strings.Split(offer, ";")
		if !strings.EqualFold(strings.TrimSpace(params[0]), "permessage-deflate") {
			continue
		}
		ok := true
		for _, p := range params[1:] {
			name, value, _ := strings.Cut(strings.TrimSpace(p), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			value = strings.Trim(strings.TrimSpace(value), `"`)
			switch name {
			case "server_no_context_takeover", "client_no_context_takeover":
				ok = ok && value == ""
			case "client_max_window_bits":
				if value != "" {
					n, err := strconv.Atoi(value)
					ok = ok && err == nil && n >= 8 && n <= 15
				}
			case "server_max_window_bits":
				ok = ok && value == "15"
			default:
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// Deflater compresses messages for permessage-deflate without context
// takeover. The zero value is ready to use; it is not safe for concurrent
// use (keep one per goroutine).
type Deflater struct {
	w   *flate.Writer
	buf bytes.Buffer
}

// AppendFrame appends one final, unmasked data frame with RSV1 set whose
// payload is p compressed on its own (no context from earlier messages).
func (d *Deflater) AppendFrame(dst []byte, op OpCode, p []byte) []byte {
	d.buf.Reset()
	if d.w == nil {
		d.w, _ = flate.NewWriter(&d.buf, flate.BestSpeed) // BestSpeed is a valid level
	} else {
		d.w.Reset(&d.buf)
	}
	_, _ = d.w.Write(p) // writes to a bytes.Buffer do not fail
	_ = d.w.Flush()
	z := bytes.TrimSuffix(d.buf.Bytes(), deflateTail)
	if len(z) == 0 {
		z = []byte{0x00} // an empty message: one empty stored block, final bit clear
	}
	start := len(dst)
	dst = AppendFrameHeader(dst, op, true, len(z))
	dst[start] |= 0x40 // RSV1: compressed
	return append(dst, z...)
}

// ErrInflate is returned by Inflater.Inflate for a payload that is not
// valid deflate data.
var ErrInflate = errors.New("ws: invalid compressed message")

// Inflater decompresses permessage-deflate messages. Every message is
// inflated with a fresh decompressor state (no context takeover). The
// zero value is ready to use; it is not safe for concurrent use.
type Inflater struct {
	src bytes.Reader
	r   io.ReadCloser
	out []byte
}

// Inflate decompresses the payload of one compressed message. The result
// is valid until the next call. A result over max bytes is a *CloseError
// with CloseMessageTooBig; invalid deflate data is a *CloseError with
// CloseProtocolError; a text message (text true) that is not UTF-8 after
// inflating is a *CloseError with CloseInvalidPayload.
func (f *Inflater) Inflate(p []byte, max int, text bool) ([]byte, error) {
	f.src.Reset(p)
	src := io.MultiReader(&f.src, bytes.NewReader(deflateTail))
	if f.r == nil {
		f.r = flate.NewReader(src)
	} else if err := f.r.(flate.Resetter).Reset(src, nil); err != nil {
		return nil, err
	}
	if cap(f.out) < 512 {
		f.out = make([]byte, 0, 512)
	}
	out := f.out[:0]
	for {
		if len(out) == cap(out) {
			if len(out) > max {
				break
			}
			out = append(out, 0)[:len(out)]
		}
		n, err := f.r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > max {
			break
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			// The sync-flush tail ends the data without a final block.
			break
		}
		if err != nil {
			f.out = out[:0]
			return nil, &CloseError{Code: CloseProtocolError, Reason: ErrInflate.Error()}
		}
	}
	f.out = out[:0]
	if len(out) > max {
		return nil, &CloseError{Code: CloseMessageTooBig, Reason: "message over " + strconv.Itoa(max) + " bytes after inflating"}
	}
	if text && !utf8.Valid(out) {
		return nil, invalidUTF8()
	}
	return out, nil
}
