package presencetest

import (
	"bytes"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// RunKV runs the presence.KV suite against the stores newKV returns.
func RunKV(t *testing.T, newKV func(t *testing.T) presence.KV) {
	run(t, newKV, []testCase[presence.KV]{
		{"missing", kvMissing},
		{"put get overwrite", kvPutGetOverwrite},
		{"empty value", kvEmptyValue},
		{"binary and copied", kvBinaryAndCopied},
	})
}

// kvMissing is the subtest "missing".
func kvMissing(t *testing.T, s presence.KV) {
	if v, ok := get(t, s, "room:r1:settings"); ok || v != nil {
		t.Errorf("Get of a missing key = %q, %v; want nil, false", v, ok)
	}
}

// kvPutGetOverwrite is the subtest "put get overwrite".
func kvPutGetOverwrite(t *testing.T, s presence.KV) {
	put(t, s, "room:r1:settings", []byte(`{"slow":5}`))
	put(t, s, "room:r2:settings", []byte(`{"slow":1}`))
	if v, ok := get(t, s, "room:r1:settings"); !ok || string(v) != `{"slow":5}` {
		t.Errorf("Get = %q, %v; want {\"slow\":5}", v, ok)
	}
	put(t, s, "room:r1:settings", []byte(`{"slow":9}`))
	if v, _ := get(t, s, "room:r1:settings"); string(v) != `{"slow":9}` {
		t.Errorf("Get after overwrite = %q", v)
	}
	if v, _ := get(t, s, "room:r2:settings"); string(v) != `{"slow":1}` {
		t.Errorf("other key changed: %q", v)
	}
}

// kvEmptyValue is the subtest "empty value".
func kvEmptyValue(t *testing.T, s presence.KV) {
	put(t, s, "k", nil)
	if v, ok := get(t, s, "k"); !ok || len(v) != 0 {
		t.Errorf("Get of an empty value = %q, %v; want empty, true", v, ok)
	}
}

// kvBinaryAndCopied is the subtest "binary and copied".
func kvBinaryAndCopied(t *testing.T, s presence.KV) {
	val := []byte{0, 1, 2, 0xff, '\n'}
	put(t, s, "bin", val)
	val[0] = 9
	v, _ := get(t, s, "bin")
	if !bytes.Equal(v, []byte{0, 1, 2, 0xff, '\n'}) {
		t.Fatalf("Get = %v; caller's slice was kept or bytes mangled", v)
	}
	v[1] = 9
	if v2, _ := get(t, s, "bin"); v2[1] != 1 {
		t.Error("mutating a returned value changed the store")
	}
}

func get(t *testing.T, s presence.KV, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := s.Get(ctxFor(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return v, ok
}

func put(t *testing.T, s presence.KV, key string, val []byte) {
	t.Helper()
	if err := s.Put(ctxFor(t), key, val); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}
