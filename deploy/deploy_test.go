// Package deploy holds the deployment files (docker-compose, Kubernetes
// manifests, example configs); its tests check that every YAML file parses
// and has the structure the docs promise, and validate the compose file and
// the manifests with the Compose loader and the Kubernetes API types
// (validate_test.go). No Docker engine or cluster is needed.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/route"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// docs returns the YAML documents of path.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
}

// get follows a path of map keys; it returns nil when one is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestEveryYAMLParses parses every .yaml/.yml file under deploy/.
func TestEveryYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			n++
			t.Run(path, func(t *testing.T) {
				if len(docs(t, path)) == 0 {
					t.Error("no YAML document")
				}
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Errorf("found %d YAML files, expected the compose file, manifests and configs", n)
	}
}

// partitionSpecs finds "ingest:N accepted:N" in a topic-creation script and
// checks the two counts are equal.
func checkTopicScript(t *testing.T, where, script string) {
	t.Helper()
	m := regexp.MustCompile(`ingest:(\d+) accepted:(\d+)`).FindStringSubmatch(script)
	if m == nil {
		t.Errorf("%s: no topic creation for ingest and accepted", where)
		return
	}
	if m[1] != m[2] {
		t.Errorf("%s: ingest has %s partitions, accepted %s: they must be equal", where, m[1], m[2])
	}
}

func TestCompose(t *testing.T) {
	d := docs(t, "compose/docker-compose.yml")[0]
	services, _ := get(d, "services").(map[string]any)
	for _, name := range []string{"kafka-1", "kafka-2", "kafka-3", "kafka-topics", "clickhouse", "redis",
		"gateway-1", "gateway-2", "logic-1", "logic-2", "dispatch"} {
		t.Run(name, func(t *testing.T) {
			s := services[name]
			if s == nil {
				t.Fatal("service missing")
			}
			if str(get(s, "image")) == "" {
				t.Error("no image")
			}
			if name != "kafka-topics" && get(s, "healthcheck", "test") == nil {
				t.Error("no health check")
			}
			if strings.HasPrefix(name, "kafka-") && name != "kafka-topics" {
				if roles := str(get(s, "environment", "KAFKA_PROCESS_ROLES")); !strings.Contains(roles, "controller") {
					t.Errorf("not KRaft: KAFKA_PROCESS_ROLES = %q", roles)
				}
			}
			role := strings.TrimRight(name, "-12")
			if role == "gateway" || role == "logic" || role == "dispatch" {
				cmd, _ := get(s, "command").([]any)
				if len(cmd) == 0 || cmd[0] != role {
					t.Errorf("command = %v, want the %s role", cmd, role)
				}
				test, _ := get(s, "healthcheck", "test").([]any)
				if !strings.Contains(strings.Join(toStrings(test), " "), "/readyz") {
					t.Errorf("health check %v does not probe /readyz", test)
				}
				if !strings.Contains(str(get(s, "environment", "DANMAKU_JWT_SECRET")), "${DANMAKU_JWT_SECRET") {
					t.Error("the JWT secret must come from the environment")
				}
			}
			if role == "gateway" {
				grace, err := time.ParseDuration(str(get(s, "stop_grace_period")))
				drain, _ := time.ParseDuration(str(get(s, "environment", "DANMAKU_DRAIN_TIMEOUT")))
				if err != nil || grace <= drain+5*time.Second {
					t.Errorf("stop_grace_period %v must exceed the drain timeout %v + 5s", grace, drain)
				}
			}
		})
	}
	cmd, _ := get(services["kafka-topics"], "command").([]any)
	checkTopicScript(t, "compose kafka-topics", strings.Join(toStrings(cmd), " "))
}

func toStrings(v []any) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i], _ = x.(string)
	}
	return out
}

func TestKubernetes(t *testing.T) {
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	kinds := map[string]map[string]any{} // "Kind/name" → object
	for _, f := range files {
		for _, d := range docs(t, f) {
			kind, name := str(d["kind"]), str(get(d, "metadata", "name"))
			if str(d["apiVersion"]) == "" || kind == "" || name == "" {
				t.Errorf("%s: object without apiVersion, kind or name: %v", f, d)
				continue
			}
			if kind != "Namespace" && str(get(d, "metadata", "namespace")) != "danmaku" {
				t.Errorf("%s: %s/%s not in namespace danmaku", f, kind, name)
			}
			kinds[kind+"/"+name] = d
		}
	}
	for _, want := range []string{"Namespace/danmaku", "ConfigMap/danmaku-config", "Secret/danmaku-secrets",
		"Deployment/gateway", "Deployment/logic", "Deployment/dispatch", "Service/gateway",
		"PodDisruptionBudget/gateway", "PodDisruptionBudget/logic", "PodDisruptionBudget/kafka",
		"StatefulSet/kafka", "Service/kafka", "StatefulSet/clickhouse", "Service/clickhouse",
		"StatefulSet/redis", "Service/redis", "Job/kafka-topics"} {
		if kinds[want] == nil {
			t.Errorf("missing %s", want)
		}
	}
	for _, role := range []string{"gateway", "logic", "dispatch"} {
		t.Run(role, func(t *testing.T) {
			d := kinds["Deployment/"+role]
			if d == nil {
				t.Skip("missing")
			}
			pod := get(d, "spec", "template", "spec")
			cs, _ := get(pod, "containers").([]any)
			if len(cs) != 1 {
				t.Fatalf("want one container, got %d", len(cs))
			}
			c := cs[0]
			if str(get(c, "image")) == "" {
				t.Error("no image")
			}
			if args, _ := get(c, "args").([]any); len(args) == 0 || args[0] != role {
				t.Errorf("args = %v, want the %s role", args, role)
			}
			if str(get(c, "readinessProbe", "httpGet", "path")) != "/readyz" || str(get(c, "livenessProbe", "httpGet", "path")) != "/healthz" {
				t.Error("want readiness /readyz and liveness /healthz probes")
			}
			if get(c, "resources", "requests", "cpu") == nil || get(c, "resources", "limits", "memory") == nil {
				t.Error("want cpu requests and memory limits")
			}
			if !strings.Contains(str(get(d, "spec", "selector", "matchLabels", "role")), role) {
				t.Error("selector does not select the role")
			}
			if role == "gateway" {
				grace, _ := get(pod, "terminationGracePeriodSeconds").(int)
				var drain time.Duration
				envs, _ := get(c, "env").([]any)
				for _, e := range envs {
					if str(get(e, "name")) == "DANMAKU_DRAIN_TIMEOUT" {
						drain, _ = time.ParseDuration(str(get(e, "value")))
					}
				}
				if drain == 0 || time.Duration(grace)*time.Second <= drain+5*time.Second {
					t.Errorf("terminationGracePeriodSeconds %d must exceed the drain timeout %v + 5s", grace, drain)
				}
			}
		})
	}
	if cm := kinds["ConfigMap/danmaku-config"]; str(get(cm, "data", "DANMAKU_BUS")) != "kafka" {
		t.Error("the ConfigMap must select the kafka bus")
	}
	args, _ := get(kinds["Job/kafka-topics"], "spec", "template", "spec", "containers").([]any)
	if len(args) > 0 {
		a, _ := get(args[0], "args").([]any)
		checkTopicScript(t, "k8s kafka-topics", strings.Join(toStrings(a), " "))
	}
}

// TestConfigExamples checks the example config files are flat mappings of
// scalars (the format `danmaku --config` reads).
func TestConfigExamples(t *testing.T) {
	files, _ := filepath.Glob("config/*.yaml")
	if len(files) < 3 {
		t.Fatalf("want config examples for gateway, logic and dispatch, got %v", files)
	}
	for _, f := range files {
		for k, v := range docs(t, f)[0] {
			switch v.(type) {
			case string, int, bool:
			default:
				t.Errorf("%s: %s is not a scalar: %v", f, k, v)
			}
		}
	}
}

// TestRoomAffinityRouting: with room affinity on in the k8s ConfigMap,
// viewers come through a router that hashes the room (the manifests and
// the standalone nginx example), and the gateways behind it do not cap
// connections per address (every one comes from the router).
func TestRoomAffinityRouting(t *testing.T) {
	kinds := map[string]map[string]any{}
	files, _ := filepath.Glob("k8s/*.yaml")
	for _, f := range files {
		for _, d := range docs(t, f) {
			kinds[str(d["kind"])+"/"+str(get(d, "metadata", "name"))] = d
		}
	}
	if str(get(kinds["ConfigMap/danmaku-config"], "data", "DANMAKU_AFFINITY")) != "true" {
		t.Skip("affinity is off in the manifests")
	}
	conf := str(get(kinds["ConfigMap/gateway-router"], "data", "nginx.conf"))
	standalone, err := os.ReadFile("nginx/room-affinity.conf")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]string{"k8s gateway-router": conf, "nginx/room-affinity.conf": string(standalone)} {
		for _, want := range []string{"js_set $room_route room.route", "hash $room_route consistent", "set $dispatch_partitions 12",
			"proxy_set_header Upgrade $http_upgrade", "http_503", "limit_conn "} {
			if !strings.Contains(c, want) {
				t.Errorf("%s: no %q", name, want)
			}
		}
	}
	js, err := os.ReadFile("nginx/room-route.js")
	if err != nil {
		t.Fatal(err)
	}
	if str(get(kinds["ConfigMap/gateway-router"], "data", "room-route.js")) != string(js) {
		t.Error("the gateway-router ConfigMap's room-route.js differs from nginx/room-route.js")
	}
	if !strings.Contains(conf, "server gateway-pods.danmaku.svc.cluster.local service=ws weight=2 resolve;") || kinds["Service/gateway-pods"] == nil {
		t.Error("the router must follow the gateway pods through the SRV records of the headless gateway-pods Service, a server per pod")
	}
	ws := false
	ports, _ := get(kinds["Service/gateway-pods"], "spec", "ports").([]any)
	for _, p := range ports {
		ws = ws || str(get(p, "name")) == "ws" && fmt.Sprint(get(p, "port")) == "8090"
	}
	if !ws {
		t.Error("Service gateway-pods: no port ws 8090, so no _ws._tcp SRV records for the router")
	}
	if str(get(kinds["Service/gateway-router"], "spec", "type")) != "LoadBalancer" {
		t.Error("the gateway-router Service must be the viewers' entry (LoadBalancer)")
	}
	cs, _ := get(kinds["Deployment/gateway"], "spec", "template", "spec", "containers").([]any)
	perIP := ""
	for _, c := range cs {
		envs, _ := get(c, "env").([]any)
		for _, e := range envs {
			if str(get(e, "name")) == "DANMAKU_MAX_CONNS_PER_IP" {
				perIP = str(get(e, "value"))
			}
		}
	}
	if perIP != "-1" {
		t.Errorf("gateways behind the router: DANMAKU_MAX_CONNS_PER_IP = %q, want -1", perIP)
	}
}

// TestRoomRouteMatchesTheBus runs nginx/room-route.js (the router's njs
// code) in node and checks that it puts rooms in the dispatch partitions
// the bus puts them in (bus.KeyPartition), so the router sends a room's
// viewers to the gateways that read its partition.
func TestRoomRouteMatchesTheBus(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	dir := t.TempDir()
	src, err := os.ReadFile("nginx/room-route.js")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "room-route.mjs"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	var rooms []string
	for i := range 300 {
		rooms = append(rooms, "r"+strconv.Itoa(i)+strings.Repeat("x_-Z9", i%13))
	}
	script := `import m from "./room-route.mjs";
const rooms = JSON.parse(process.argv[2]);
const out = rooms.map(r => [1, 8, 12, 17, 256].map(n => m.partition(r, n)));
out.push(m.route({variables: {arg_room: "demo", request_id: "00ff", dispatch_partitions: "12", room_slots: "2"}}));
const keys = [];
for (const [room, hot, draw] of JSON.parse(process.argv[3])) {
    keys.push([m.key(room, 8, 2, hot, draw), m.hotSlots(hot * 1000 + draw % 1000, 1000)]);
}
out.push(keys);
out.push([[0, 5000], [-1, 5000], [1000, 1e9], [1000, 1000], [1000, 1001]].map(([per, online]) => m.hotSlots(online, per)));
// refreshHot with nginx's objects mocked: one hot room, one cold, then a
// read that fails (the dict keeps what it has).
const dict = new Map();
let answer = {status: 200, json: async () => ({rooms: [{room: "big", online: 18000}, {room: "small", online: 10}]})};
const logs = [];
globalThis.ngx = {shared: {danmaku_hot: dict}, WARN: 1, log: (l, msg) => logs.push(msg),
    fetch: async (url) => { if (url !== "http://gw/api/rooms") throw new Error("url " + url); return answer; }};
const s = {variables: {hot_rooms_api: "http://gw/api/rooms", room_viewers_per_slot: "3000"}};
const req = (room) => ({variables: {arg_room: room, request_id: "00ff", dispatch_partitions: "12", room_slots: "2"}});
await m.refreshHot(s);
const routed = [m.route(req("big")), m.route(req("small"))];
answer = {status: 503, json: async () => ({})};
await m.refreshHot(s);
routed.push(m.route(req("big")), logs.length);
// $room_viewers_per_slot 0 turns hot rooms off: no read, nothing stored.
dict.clear();
let fetches = 0;
const fetch0 = ngx.fetch;
ngx.fetch = async (url) => { fetches++; return fetch0(url); };
answer = {status: 200, json: async () => ({rooms: [{room: "big", online: 18000}]})};
await m.refreshHot({variables: {hot_rooms_api: "http://gw/api/rooms", room_viewers_per_slot: "0"}});
routed.push(m.route(req("big")), fetches);
out.push(routed);
console.log(JSON.stringify(out));`
	if err := os.WriteFile(filepath.Join(dir, "check.mjs"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	arg, _ := json.Marshal(rooms)
	var cases [][3]any
	for i, room := range rooms[:50] {
		cases = append(cases, [3]any{room, i % 7, uint32(i * 2654435761 % 65536)})
	}
	arg2, _ := json.Marshal(cases)
	cmd := exec.Command(node, "check.mjs", string(arg), string(arg2))
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var got []any
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(rooms)+4 {
		t.Fatalf("node printed %q: %v", out, err)
	}
	for i, room := range rooms {
		ps, _ := got[i].([]any)
		for j, n := range []int{1, 8, 12, 17, 256} {
			if p, _ := ps[j].(float64); int(p) != bus.KeyPartition(room, n) {
				t.Fatalf("room %q of %d partitions: room-route.js says %v, bus.KeyPartition %d", room, n, ps[j], bus.KeyPartition(room, n))
			}
		}
	}
	if want := strconv.Itoa(bus.KeyPartition("demo", 12)) + ":1"; got[len(rooms)] != want {
		t.Errorf("route of room demo = %v, want %q (partition:slot)", got[len(rooms)], want)
	}
	// The bench's router (pkg/route) makes the same keys and hot slots.
	keys, _ := got[len(rooms)+1].([]any)
	for i, c := range cases {
		k, _ := keys[i].([]any)
		room, hot, draw := c[0].(string), c[1].(int), c[2].(uint32)
		if want := route.Key(room, 8, 2, hot, draw); len(k) != 2 || k[0] != want {
			t.Errorf("key(%q, hot %d, draw %d): room-route.js %v, pkg/route %q", room, hot, draw, k, want)
		}
		if want := route.HotSlots(hot*1000+int(draw%1000), 1000); len(k) != 2 || int(k[1].(float64)) != want {
			t.Errorf("hotSlots(%d): room-route.js %v, pkg/route %d", hot*1000+int(draw%1000), k, want)
		}
	}
	// Off (0, -1), the cap, the edge.
	var hs []int
	for _, c := range [][2]int{{0, 5000}, {-1, 5000}, {1000, 1e9}, {1000, 1000}, {1000, 1001}} {
		hs = append(hs, route.HotSlots(c[1], c[0]))
	}
	if g := got[len(rooms)+2]; fmt.Sprint(g) != fmt.Sprint(hs) {
		t.Errorf("hotSlots at per-slot 0, -1 and the cap: room-route.js %v, pkg/route %v", g, hs)
	}
	// 0x00ff = 255: slot 255 % 6 of the hot room's 6, the cold room by
	// partition; a failed read is logged and keeps the hot room; per-slot
	// 0 reads nothing, stores nothing.
	big := strconv.Itoa(bus.KeyPartition("big", 12)) + ":1"
	want := []any{"room:big:3", strconv.Itoa(bus.KeyPartition("small", 12)) + ":1", "room:big:3", float64(1), big, float64(0)}
	if g := got[len(rooms)+3]; fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("after refreshHot: routes %v, want %v", g, want)
	}
}
