package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/route"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestNginxRoomRouting runs the shipped router, nginx/room-affinity.conf
// and nginx/room-route.js, in a real nginx in front of stub gateways and
// checks that it sends every viewer where pkg/route says, the rule the
// bench places viewers by: route.Key of the room (its dispatch partition
// and the slot room-route.js draws from the request id), or the request id
// for a URL without a room, on route.Ring over the upstream's servers in
// the order of the file. Then it reloads nginx with one gateway fewer
// (only that gateway's keys move), and with a Unix-socket gateway and a
// host name.
//
// The file runs as shipped but for what a test must change (see
// nginxRouter.render), with the lines marked "njs 0.8.1+" dropped, as the
// file says for njs 0.7 (Debian 12's libnginx-mod-http-js 0.7.9): every
// room goes by its partition. With njs 0.8.1 or later (DANMAKU_TEST_NGINX
// naming such an nginx) "hot rooms" also runs the whole file.
func TestNginxRoomRouting(t *testing.T) {
	bin, modules := testenv.Nginx(t)
	shipped, err := os.ReadFile("nginx/room-affinity.conf")
	if err != nil {
		t.Fatal(err)
	}
	p := placement{
		partitions: confInt(t, string(shipped), `set \$dispatch_partitions (\d+);`),
		slots:      confInt(t, string(shipped), `set \$room_slots (\d+);`),
	}

	// Six stub gateways on loopback TCP, a seventh on a Unix socket.
	const gateways = 6
	sockDir := t.TempDir()
	var addrs []string
	served := make([]atomic.Int64, gateways+1)
	for i := range gateways + 1 {
		srv := httptest.NewUnstartedServer(stubGateway(i, &served[i]))
		if i == gateways {
			srv.Listener.Close()
			if srv.Listener, err = net.Listen("unix", filepath.Join(sockDir, "gateway.sock")); err != nil {
				t.Fatal(err)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		addrs = append(addrs, srv.Listener.Addr().String())
	}
	// name is each stub gateway's server in nginx's upstream.
	name := slices.Clone(addrs)
	p.name = func(h http.Header) string {
		i, err := strconv.Atoi(h.Get("X-Gateway"))
		if err != nil || i < 0 || i >= len(name) {
			return "?" + h.Get("X-Gateway")
		}
		return name[i]
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

	// Viewers: rooms of the names viewers use ([A-Za-z0-9_-]{1,64}), in the
	// URL shapes clients send, and URLs without a room.
	rooms := viewerRooms(2000)
	var reqs []viewer
	for i, room := range rooms {
		reqs = append(reqs, viewer{room: room, path: roomURL(i, room)})
	}
	for i, room := range rooms[:50] { // again and again: both slots, the same gateways
		for j := range 10 {
			reqs = append(reqs, viewer{room: room, path: roomURL(i+j, room)})
		}
	}
	for i := range 400 {
		reqs = append(reqs, viewer{path: []string{"/ws", "/ws?token=t" + strconv.Itoa(i), "/ws?room=", "/"}[i%4]})
	}

	ngx := newNginxRouter(t, bin, modules, string(shipped), false)
	ngx.render(addrs[:gateways])
	ngx.start(client)
	t.Logf("%s (njs module in %s) in front of %d stub gateways; %d partitions, %d slots", ngx.version, modules, gateways, p.partitions, p.slots)
	before := p.check(t, "6 gateways", addrs[:gateways], send(client, ngx.ws, reqs, p.name))

	// Real WebSocket upgrades through the shipped headers: the gateway
	// answers 101 and nginx tunnels the connection.
	var ups []viewer
	for i, room := range rooms[:20] {
		v := upgrade(ngx.ws, roomURL(i, room), p.name)
		v.room = room
		ups = append(ups, v)
	}
	p.check(t, "6 gateways, WebSocket upgrades", addrs[:gateways], ups)

	// One gateway fewer, by reload: the keys on the others stay.
	const gone = 2
	fewer := slices.Delete(slices.Clone(addrs[:gateways]), gone, gone+1)
	ngx.render(fewer)
	client.CloseIdleConnections() // so the old workers exit at once
	ngx.reload()
	was := served[gone].Load()
	var again []viewer
	for _, v := range slices.Concat(reqs[:len(rooms)], reqs[len(reqs)-400:]) {
		again = append(again, viewer{room: v.room, path: v.path})
	}
	after := p.check(t, "5 gateways", fewer, send(client, ngx.ws, again, p.name))
	if n := served[gone].Load() - was; n != 0 {
		t.Errorf("the removed gateway %s got %d requests after the reload", addrs[gone], n)
	}
	// Every key is placed as before unless it was on the removed gateway:
	// the keys nginx placed in both runs, and (by pkg/route's ring, which
	// nginx followed before) every key of this run.
	ring := route.NewRing(addrs[:gateways])
	moved, stayed, wrong := 0, 0, 0
	for key, gw := range after {
		was, seen := before[key]
		if !seen {
			was = addrs[ring.Get(key)]
		}
		switch {
		case was == addrs[gone]:
			moved++
		case was != gw:
			if wrong++; wrong <= 20 {
				t.Errorf("key %q moved from %s to %s, though its gateway stayed (seen by nginx before: %v)", key, was, gw, seen)
			}
		default:
			stayed++
		}
	}
	if moved == 0 || stayed == 0 {
		t.Errorf("removing a gateway moved %d keys and kept %d: expected some of each", moved, stayed)
	}
	t.Logf("removing gateway %s (of %d) moved its %d keys; %d stayed", addrs[gone], gateways, moved, stayed)

	// nginx hashes a server as written in the file, a name or "unix:"
	// and a path, not the address it reaches.
	name[1] = strings.Replace(addrs[1], "127.0.0.1:", "localhost:", 1)
	name[gateways] = "unix:" + addrs[gateways]
	named := append([]string{name[gateways], name[1]}, addrs[2:gateways]...)
	ngx.render(named)
	client.CloseIdleConnections()
	ngx.reload()
	p.check(t, "a Unix socket, a host name and 4 addresses", named, send(client, ngx.ws, again, p.name))
	copy(name, addrs)

	t.Run("hot rooms", func(t *testing.T) {
		// The whole file: refreshHot reads the stubs' GET /api/rooms
		// (stubHotRooms) through the router's own HTTP port.
		hot := newNginxRouter(t, bin, modules, string(shipped), true)
		hot.render(addrs[:gateways])
		if out, err := hot.test(); err != nil {
			if strings.Contains(out, `unknown directive "js_shared_dict_zone"`) || strings.Contains(out, `unknown directive "js_periodic"`) {
				t.Skipf("%s: njs older than 0.8.1, so no hot rooms (the lines marked njs 0.8.1+ ran dropped above): %s", hot.version, strings.TrimSpace(out))
			}
			t.Fatalf("nginx -t: %v\n%s", err, out)
		}
		hot.start(client)
		perSlot := confInt(t, string(shipped), `js_var \$room_viewers_per_slot (\d+);`)
		hp := p
		hp.hot = map[string]int{}
		var vs []viewer
		for _, h := range stubHotRooms {
			if n := route.HotSlots(h.Online, perSlot); n > 0 {
				hp.hot[h.Room] = n
			}
			for i := range 100 {
				vs = append(vs, viewer{room: h.Room, path: roomURL(i, h.Room)})
			}
		}
		for i, room := range rooms[:300] {
			vs = append(vs, viewer{room: room, path: roomURL(i, room)})
		}
		// Wait for the first refresh (at worker start).
		deadline := time.Now().Add(10 * time.Second)
		for {
			v := send(client, hot.ws, []viewer{{room: stubHotRooms[0].Room, path: "/ws?room=" + stubHotRooms[0].Room}}, p.name)[0]
			if strings.HasPrefix(v.key, "room:") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("room %q still keyed %q (%v) 10 s after start: refreshHot did not store it\n%s", v.room, v.key, v.err, hot.proc.Log())
			}
			time.Sleep(50 * time.Millisecond)
		}
		placed := hp.check(t, "hot rooms", addrs[:gateways], send(client, hot.ws, vs, p.name))
		for room, n := range hp.hot {
			keys := 0
			for key := range placed {
				if strings.HasPrefix(key, "room:"+room+":") {
					keys++
				}
			}
			if keys != n {
				t.Errorf("hot room %q: %d keys of its own in 100 requests, want its %d slots", room, keys, n)
			}
		}
		t.Logf("%s: hot rooms %v (%d viewers per slot) on slots of their own, the rest by partition", hot.version, hp.hot, perSlot)
	})
}

// placement is what pkg/route says of where the router sends viewers.
type placement struct {
	partitions, slots int
	hot               map[string]int             // hot slots by room
	name              func(h http.Header) string // the server of the gateway that answered
}

// wantKey is pkg/route's key for v: its room's, with the slot drawn from
// the request id as room-route.js does (parseInt(id.slice(-4), 16)), or
// for no room the request id.
func (p placement) wantKey(v viewer) string {
	if v.room == "" {
		return v.id
	}
	draw, _ := strconv.ParseUint(v.id[max(len(v.id)-4, 0):], 16, 32)
	return route.Key(v.room, p.partitions, p.slots, p.hot[v.room], uint32(draw))
}

// check compares where nginx sent vs with pkg/route over servers; it
// returns where each key went.
func (p placement) check(t *testing.T, phase string, servers []string, vs []viewer) map[string]string {
	t.Helper()
	ring := route.NewRing(servers)
	placed := map[string]string{}
	byRoom := map[string]map[string]bool{}
	bad := map[string]int{} // by key
	for _, v := range vs {
		var msg string
		_, query, _ := strings.Cut(v.path, "?")
		switch {
		case v.err != nil:
			msg = v.err.Error()
		case v.key != p.wantKey(v):
			msg = fmt.Sprintf("nginx hashed key %q, pkg/route's key is %q (request id %s)", v.key, p.wantKey(v), v.id)
		case v.gw != servers[ring.Get(v.key)]:
			msg = fmt.Sprintf("key %q: nginx chose gateway %s, pkg/route.Ring %s", v.key, v.gw, servers[ring.Get(v.key)])
		case placed[v.key] != "" && placed[v.key] != v.gw:
			msg = fmt.Sprintf("key %q went to gateway %s, before to %s", v.key, v.gw, placed[v.key])
		case v.query != query:
			msg = fmt.Sprintf("the gateway got query %q", v.query)
		}
		if msg != "" {
			if bad[v.key]++; bad[v.key] == 1 && len(bad) <= 20 {
				t.Errorf("%s: room %q (%s): %s", phase, v.room, v.path, msg)
			}
			continue
		}
		placed[v.key] = v.gw
		if v.room != "" {
			if byRoom[v.room] == nil {
				byRoom[v.room] = map[string]bool{}
			}
			byRoom[v.room][v.gw] = true
		}
	}
	for room, gws := range byRoom {
		if n := max(p.slots, p.hot[room]); len(gws) > n {
			t.Errorf("%s: room %q reached %d gateways, more than its %d slots", phase, room, len(gws), n)
		}
	}
	if len(bad) > 0 {
		n := 0
		for _, c := range bad {
			n += c
		}
		t.Fatalf("%s: %d of %d requests (%d keys) not where pkg/route puts them", phase, n, len(vs), len(bad))
	}
	t.Logf("%s: %d requests (%d rooms, %d keys) each on pkg/route's gateway", phase, len(vs), len(byRoom), len(placed))
	return placed
}

// nginxRouter is nginx running nginx/room-affinity.conf, in a directory
// of its own (its -p prefix: configuration, pid, temp files).
type nginxRouter struct {
	t            *testing.T
	bin, version string
	shipped      string
	hot          bool   // keep the lines marked njs 0.8.1+
	dir, conf    string // prefix, configuration file
	js           string // js_path: the directory of room-route.js
	ws, http     string // listen addresses
	temps        []string
	global       string // -g
	proc         *testenv.Process
}

func newNginxRouter(t *testing.T, bin, modules, shipped string, hot bool) *nginxRouter {
	t.Helper()
	n := &nginxRouter{t: t, bin: bin, shipped: shipped, hot: hot, dir: t.TempDir(), ws: testenv.FreeAddr(t), http: testenv.FreeAddr(t)}
	n.conf = filepath.Join(n.dir, "nginx.conf")
	if err := os.Mkdir(filepath.Join(n.dir, "temp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(modules, filepath.Join(n.dir, "modules")); err != nil { // load_module modules/…
		t.Fatal(err)
	}
	js, err := filepath.Abs("nginx")
	if err != nil {
		t.Fatal(err)
	}
	n.js = js
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -V: %v\n%s", bin, err, out)
	}
	n.version, _, _ = strings.Cut(string(out), "\n")
	n.temps = tempPaths(string(out))
	n.global = "daemon off; pid " + filepath.Join(n.dir, "nginx.pid") + ";"
	if os.Geteuid() == 0 {
		n.global += " user root;" // workers as this user, not nobody
	}
	return n
}

// render writes the configuration: nginx/room-affinity.conf as shipped,
// changed only where a test must: without hot rooms the lines marked "njs
// 0.8.1+" dropped (the file's rule for njs 0.7); js_path, the listen
// addresses (and the hot-room API URL on the HTTP one) and the gateways
// (servers, each with the shipped parameters) on loopback; the temp paths
// and the access log under the prefix; and two headers that tell a gateway
// the key nginx hashed and the request id it drew the slot from. Each
// change must find its place in the file once, so the test notices when
// the file changes.
func (n *nginxRouter) render(servers []string) {
	t := n.t
	t.Helper()
	conf := n.shipped
	if !n.hot {
		var kept []string
		dropped := 0
		for _, l := range strings.SplitAfter(conf, "\n") {
			if strings.Contains(l, "# njs 0.8.1+") {
				dropped++
				continue
			}
			kept = append(kept, l)
		}
		conf = strings.Join(kept, "")
		if dropped == 0 || strings.Contains(conf, "js_shared_dict_zone") || strings.Contains(conf, "js_periodic") {
			t.Fatalf("dropping the lines marked njs 0.8.1+ (%d) leaves njs 0.8 directives", dropped)
		}
	}
	once := func(old, new string) {
		t.Helper()
		if c := strings.Count(conf, old); c != 1 {
			t.Fatalf("nginx/room-affinity.conf: %q %d times, want once", old, c)
		}
		conf = strings.Replace(conf, old, new, 1)
	}
	once("js_path /etc/nginx/danmaku;", "js_path "+n.js+";")
	once("listen 8090;", "listen "+n.ws+";")
	once("listen 8080;", "listen "+n.http+";")
	if n.hot {
		once("js_var $hot_rooms_api http://127.0.0.1:8080/", "js_var $hot_rooms_api http://"+n.http+"/")
	}
	once("\nhttp {\n", "\nhttp {\n    "+strings.Join(append(slices.Clone(n.temps), "access_log off;"), "\n    ")+"\n")
	once("proxy_pass http://danmaku_ws;\n", "proxy_pass http://danmaku_ws;\n"+
		"            proxy_set_header X-Route-Key $room_route;\n"+
		"            proxy_set_header X-Request-Id $request_id;\n")
	for _, port := range []string{"8090", "8080"} {
		re := regexp.MustCompile(`(?m)^([ \t]*)server gateway-\d+:` + port + `([^;]*);\n`)
		m := re.FindAllStringSubmatchIndex(conf, -1)
		if len(m) == 0 {
			t.Fatalf("nginx/room-affinity.conf: no server gateway-N:%s", port)
		}
		var lines strings.Builder
		indent, params := conf[m[0][2]:m[0][3]], conf[m[0][4]:m[0][5]]
		for _, s := range servers {
			lines.WriteString(indent + "server " + s + params + ";\n")
		}
		conf = conf[:m[0][0]] + lines.String() + re.ReplaceAllString(conf[m[0][1]:], "")
	}
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// test runs nginx -t on the configuration.
func (n *nginxRouter) test() (string, error) {
	out, err := exec.Command(n.bin, "-p", n.dir+"/", "-e", "stderr", "-c", n.conf, "-g", n.global, "-t").CombinedOutput()
	return string(out), err
}

// start starts nginx (stopped when the test ends) and waits until it
// answers.
func (n *nginxRouter) start(c *http.Client) {
	t := n.t
	t.Helper()
	n.proc = testenv.Spawn(t, n.bin, "nginx", "", nil, "-p", n.dir+"/", "-e", "stderr", "-c", n.conf, "-g", n.global)
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := c.Get("http://" + n.ws + "/ws?room=demo")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", res.Status)
		}
		select {
		case <-n.proc.Done():
			t.Fatalf("nginx exited: %v\n%s", n.proc.Err(), n.proc.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not answering on %s: %v\n%s", n.ws, err, n.proc.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reload makes nginx re-read its configuration (SIGHUP) and waits until
// the workers of the old one have exited, so every new connection meets
// the new one.
func (n *nginxRouter) reload() {
	t := n.t
	t.Helper()
	pid := n.proc.Pid()
	old := children(pid)
	if len(old) == 0 {
		t.Fatalf("no nginx workers under pid %d", pid)
	}
	if err := n.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := children(pid)
		if len(now) > 0 && !slices.ContainsFunc(now, func(p int) bool { return slices.Contains(old, p) }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx reload: workers %v, the old ones %v still there after 5 s\n%s", now, old, n.proc.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tempPaths are the temp path directives for the paths nginx -V says it
// was built with (Debian: /var/lib/nginx/…), under the prefix instead.
func tempPaths(v string) []string {
	var out []string
	for _, name := range []string{"client-body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if strings.Contains(v, "--http-"+name+"-temp-path=") {
			out = append(out, strings.ReplaceAll(name, "-", "_")+"_temp_path temp/"+name+";")
		}
	}
	return out
}

func confInt(t *testing.T, conf, re string) int {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(conf)
	if m == nil {
		t.Fatalf("nginx/room-affinity.conf: no %s", re)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// stubHotRooms is what the stub gateways answer GET /api/rooms with,
// busiest first: at 5,000 viewers a slot, 4 slots, 2, none.
var stubHotRooms = []struct {
	Room   string `json:"room"`
	Online int    `json:"online"`
}{{"big", 18000}, {"mid", 5001}, {"small", 10}}

// stubGateway answers GET /api/rooms with stubHotRooms, any other request
// with its number (X-Gateway) and the routing headers nginx sent, and a
// WebSocket upgrade with 101, then "pong N" to a line through the tunnel.
func stubGateway(n int, served *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/rooms" {
			_ = json.NewEncoder(w).Encode(map[string]any{"rooms": stubHotRooms})
			return
		}
		served.Add(1)
		h := w.Header()
		h.Set("X-Gateway", strconv.Itoa(n))
		h.Set("X-Route-Key", r.Header.Get("X-Route-Key"))
		h.Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		h.Set("X-Query", r.URL.RawQuery)
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			return
		}
		if !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "upgrade without Connection: upgrade", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
		_ = h.Write(rw)
		rw.WriteString("\r\n")
		if rw.Flush() != nil {
			return
		}
		if _, err := rw.ReadString('\n'); err != nil {
			return
		}
		fmt.Fprintf(rw, "pong %d\n", n)
		_ = rw.Flush()
	})
}

// viewer is one request through the router and where it went.
type viewer struct {
	room, path  string
	gw, key, id string // the gateway that answered, the key nginx hashed, the request id
	query       string // the query the gateway got
	err         error
}

func (v *viewer) fill(h http.Header, gateway func(http.Header) string) {
	v.gw, v.key, v.id, v.query = gateway(h), h.Get("X-Route-Key"), h.Get("X-Request-Id"), h.Get("X-Query")
	if v.key == "" || v.id == "" {
		v.err = fmt.Errorf("the gateway got no X-Route-Key or X-Request-Id (%v)", h)
	}
}

// send makes the requests, 8 at a time, and returns them with where they went.
func send(c *http.Client, addr string, vs []viewer, gateway func(http.Header) string) []viewer {
	out := slices.Clone(vs)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(out); i = int(next.Add(1) - 1) {
				v := &out[i]
				res, err := c.Get("http://" + addr + v.path)
				if err != nil {
					v.err = err
					continue
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					v.err = fmt.Errorf("status %s", res.Status)
					continue
				}
				v.fill(res.Header, gateway)
			}
		}()
	}
	wg.Wait()
	return out
}

// upgrade sends a WebSocket upgrade for path and a line through the
// tunnel; the gateway's answer must come back.
func upgrade(addr, path string, gateway func(http.Header) string) viewer {
	v := viewer{path: path}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		v.err = err
		return v
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Version", "13")
	if err := req.Write(conn); err != nil {
		v.err = err
		return v
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, req)
	if err != nil {
		v.err = err
		return v
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		v.err = fmt.Errorf("status %s, want 101", res.Status)
		return v
	}
	v.fill(res.Header, gateway)
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		v.err = err
		return v
	}
	line, err := br.ReadString('\n')
	if want := "pong " + res.Header.Get("X-Gateway") + "\n"; err != nil || line != want {
		v.err = fmt.Errorf("through the tunnel: %q, %v; want %q", line, err, want)
	}
	return v
}

// viewerRooms returns n room names of the kinds viewers use: the demo's,
// numbered, numeric ids and random [A-Za-z0-9_-]{1,64} (every length, so
// every tail of murmur2).
func viewerRooms(n int) []string {
	rooms := []string{"demo", "music", "games", "lobby", "a", "Z", "0", "-", "_", "room-1", "Room_1",
		strings.Repeat("x", 64), strings.Repeat("9_-A", 16)}
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	rng := rand.New(rand.NewPCG(7, 11))
	seen := map[string]bool{}
	for _, r := range rooms {
		seen[r] = true
	}
	for len(rooms) < n {
		var room string
		switch len(rooms) % 3 {
		case 0:
			room = "room-" + strconv.Itoa(len(rooms))
		case 1:
			room = strconv.Itoa(rng.IntN(1e9))
		default:
			b := make([]byte, 1+len(rooms)%64)
			for i := range b {
				b[i] = chars[rng.IntN(len(chars))]
			}
			room = string(b)
		}
		if !seen[room] {
			seen[room] = true
			rooms = append(rooms, room)
		}
	}
	return rooms
}

// roomURL is the i'th of the URL shapes clients open a room with.
func roomURL(i int, room string) string {
	switch i % 4 {
	case 0:
		return "/ws?room=" + room
	case 1:
		return "/ws?room=" + room + "&token=t" + strconv.Itoa(i)
	case 2:
		return "/ws?token=t" + strconv.Itoa(i) + "&room=" + room
	default:
		return "/?room=" + room
	}
}

// children returns the processes whose parent is pid (Linux /proc).
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}
