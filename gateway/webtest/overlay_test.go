package webtest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestOverlayPage runs overlay.mjs: the OBS overlay renders danmaku on a
// transparent page without any control, honours its options (font size,
// opacity, kinds) and display modes, takes a deleted message off the
// screen when the delete arrives, and shows what was sent while its
// connection was down once it reconnected by itself.
func TestOverlayPage(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "webtest-secret-0123456789")
	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	room, paidRoom := "overlay-"+suffix, "overlaypaid-"+suffix
	mod, err := signer.Sign("overlay-mod", "Mod", auth.RoleMod, []string{room, paidRoom}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("overlay-bot", "bot", auth.RoleService, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := testenv.Artifacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	err = testenv.Run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.HTTP,
		"DANMAKU_CHROMIUM=" + chromium,
		"DANMAKU_OUT=" + out,
		"DANMAKU_ROOM=" + room,
		"DANMAKU_PAID_ROOM=" + paidRoom,
		"DANMAKU_MOD_TOKEN=" + mod,
		"DANMAKU_SERVICE_TOKEN=" + service,
	}, node, "overlay.mjs")
	if err != nil {
		t.Fatalf("overlay.mjs: %v", err)
	}
	for _, name := range []string{"overlay", "overlay-deleted", "overlay-paid-only"} {
		if _, err := os.Stat(filepath.Join(out, name+".png")); err != nil {
			t.Errorf("no screenshot: %v", err)
		}
	}
	t.Logf("screenshots in %s", out)
}
