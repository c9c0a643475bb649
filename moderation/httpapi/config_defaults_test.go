package httpapi

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each APIConfig field's
// comment states the default NewAPI gives it: the comment is the one
// place the docs link to for an API default.
func TestConfigCommentsStateDefaults(t *testing.T) {
	signer, err := auth.NewSigner("config-defaults-test-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAPI(APIConfig{Bus: bus.NewMemory(bus.MemoryConfig{}), History: history.NewMemory(history.MemoryConfig{}), Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StatedDefaults(t, ".", a.cfg, map[string]string{
		"ID": "api-<hostname>-<pid>, different per process",
	})
	if a.cfg.NoticeAllLimit != DefaultNoticeAllLimit || a.cfg.UserNoticeLimit != DefaultUserNoticeLimit {
		t.Errorf("push limits %+v, %+v: want the Default ones", a.cfg.NoticeAllLimit, a.cfg.UserNoticeLimit)
	}
}
