package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The compose file and the Kubernetes manifests are validated with the
// libraries the tools themselves use: the Compose specification's loader
// (its JSON schema ships inside the module, so nothing is fetched) and the
// Kubernetes API types with strict decoding (an unknown or duplicate
// field, or a value of the wrong type, is an error, as kubectl's
// server-side field validation makes it). The checks of semantics the
// types do not carry (a selector that selects its pods, a probe's named
// port) are in checkObjects.

// loadCompose loads a compose file with the Compose loader: schema,
// interpolation, normalisation and the consistency checks (networks,
// volumes, depends_on naming existing services).
func loadCompose(path string, env map[string]string) (*types.Project, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(abs),
		ConfigFiles: []types.ConfigFile{{Filename: abs}},
		Environment: env,
	}
	return loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("danmaku", true)
	})
}

// TestComposeSpec validates compose/docker-compose.yml against the Compose
// specification and checks what it must run.
func TestComposeSpec(t *testing.T) {
	p, err := loadCompose("compose/docker-compose.yml", map[string]string{"DANMAKU_JWT_SECRET": "compose-test-secret"})
	if err != nil {
		t.Fatalf("compose file invalid: %v", err)
	}
	for _, name := range []string{"gateway-1", "gateway-2", "logic-1", "logic-2", "dispatch"} {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("service %s missing", name)
			continue
		}
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "/readyz") {
			t.Errorf("%s: health check %v does not probe /readyz", name, s.HealthCheck)
		}
		if v := s.Environment["DANMAKU_JWT_SECRET"]; v == nil || *v != "compose-test-secret" {
			t.Errorf("%s: DANMAKU_JWT_SECRET not taken from the environment", name)
		}
	}
	// The secret is required: without it the loader refuses the file with
	// the file's own message.
	if _, err := loadCompose("compose/docker-compose.yml", nil); err == nil || !strings.Contains(err.Error(), "DANMAKU_JWT_SECRET") {
		t.Errorf("compose file loads without DANMAKU_JWT_SECRET: %v", err)
	}
}

// TestComposeSpecRejectsBroken checks that the loader catches the broken
// compose files in testdata, each with one mistake, and a copy of the
// real file with a misspelt key.
func TestComposeSpecRejectsBroken(t *testing.T) {
	files, _ := filepath.Glob("testdata/compose-broken-*.yml")
	if len(files) < 3 {
		t.Fatalf("want broken compose files in testdata, got %v", files)
	}
	env := map[string]string{"DANMAKU_JWT_SECRET": "x"}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := loadCompose(f, env); err == nil {
				t.Errorf("%s loads without an error", f)
			} else {
				t.Logf("rejected: %v", err)
			}
		})
	}
	t.Run("misspelt key in the real file", func(t *testing.T) {
		data, err := os.ReadFile("compose/docker-compose.yml")
		if err != nil {
			t.Fatal(err)
		}
		broken := strings.Replace(string(data), "stop_grace_period:", "stop_grace_periode:", 1)
		if broken == string(data) {
			t.Fatal("no stop_grace_period in the compose file")
		}
		f := filepath.Join(t.TempDir(), "docker-compose.yml")
		if err := os.WriteFile(f, []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadCompose(f, env); err == nil || !strings.Contains(err.Error(), "stop_grace_periode") {
			t.Errorf("misspelt key not reported: %v", err)
		}
	})
}

// k8sDecoder decodes manifests strictly into the API types of the kinds
// the manifests use.
func k8sDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}

// decodeManifests decodes every document of the manifest files.
func decodeManifests(dec runtime.Decoder, files []string) ([]runtime.Object, error) {
	var objs []runtime.Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, _, err := dec.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s document %d: %w", f, i+1, err)
			}
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

// stripComments drops the comment lines of a YAML document.
func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(append(out, line...), '\n')
		}
	}
	return out
}

// checkObjects checks what strict decoding cannot: the namespace, that
// every workload's selector selects its pod template, that every probe's
// named port is a port of its container, that every Service and
// PodDisruptionBudget selects some workload, that envFrom names an
// existing ConfigMap or Secret, and that danmaku containers have readiness
// /readyz and liveness /healthz probes.
func checkObjects(objs []runtime.Object) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	type workload struct {
		name   string
		labels labels.Set
	}
	var workloads []workload
	configMaps, secrets := map[string]bool{}, map[string]bool{}
	var pods []struct {
		name string
		spec corev1.PodSpec
	}
	addPod := func(kind, name string, sel map[string]string, tmpl corev1.PodTemplateSpec) {
		if sel != nil && !labels.SelectorFromSet(sel).Matches(labels.Set(tmpl.Labels)) {
			bad("%s/%s: selector %v does not select its pod labels %v", kind, name, sel, tmpl.Labels)
		}
		workloads = append(workloads, workload{kind + "/" + name, tmpl.Labels})
		pods = append(pods, struct {
			name string
			spec corev1.PodSpec
		}{kind + "/" + name, tmpl.Spec})
	}
	for _, o := range objs {
		switch v := o.(type) {
		case *appsv1.Deployment:
			addPod("Deployment", v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template)
		case *appsv1.StatefulSet:
			addPod("StatefulSet", v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template)
		case *batchv1.Job:
			addPod("Job", v.Name, nil, v.Spec.Template)
		case *corev1.ConfigMap:
			configMaps[v.Name] = true
		case *corev1.Secret:
			secrets[v.Name] = true
		}
	}
	selects := func(sel map[string]string) bool {
		for _, w := range workloads {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(w.labels) {
				return true
			}
		}
		return false
	}
	for _, o := range objs {
		switch v := o.(type) {
		case *corev1.Namespace:
			continue
		case *corev1.Service:
			if !selects(v.Spec.Selector) {
				bad("Service/%s: selector %v selects no workload", v.Name, v.Spec.Selector)
			}
		case *policyv1.PodDisruptionBudget:
			if v.Spec.Selector == nil || !selects(v.Spec.Selector.MatchLabels) {
				bad("PodDisruptionBudget/%s: selects no workload", v.Name)
			}
		}
		if m, ok := o.(interface{ GetNamespace() string }); ok && m.GetNamespace() != "danmaku" {
			bad("%T: not in namespace danmaku", o)
		}
	}
	for _, p := range pods {
		if len(p.spec.Containers) == 0 {
			bad("%s: no containers", p.name)
		}
		for _, c := range p.spec.Containers {
			if c.Name == "" || c.Image == "" {
				bad("%s: container without name or image", p.name)
			}
			ports := map[string]bool{}
			for _, cp := range c.Ports {
				ports[cp.Name] = true
			}
			for what, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if pr == nil {
					continue
				}
				var port string
				switch {
				case pr.HTTPGet != nil:
					port = pr.HTTPGet.Port.StrVal
				case pr.TCPSocket != nil:
					port = pr.TCPSocket.Port.StrVal
				}
				if port != "" && !ports[port] {
					bad("%s: %s probe of container %s names port %q, which the container does not declare", p.name, what, c.Name, port)
				}
			}
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && !configMaps[ef.ConfigMapRef.Name] {
					bad("%s: envFrom names ConfigMap %q, which no manifest defines", p.name, ef.ConfigMapRef.Name)
				}
				if ef.SecretRef != nil && !secrets[ef.SecretRef.Name] {
					bad("%s: envFrom names Secret %q, which no manifest defines", p.name, ef.SecretRef.Name)
				}
			}
			if strings.HasPrefix(c.Image, "danmaku") {
				if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
					bad("%s: danmaku container %s has no readiness probe on /readyz", p.name, c.Name)
				}
				if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
					bad("%s: danmaku container %s has no liveness probe on /healthz", p.name, c.Name)
				}
			}
		}
	}
	return errs
}

// TestKubernetesSchema decodes every manifest of k8s/ strictly into the
// Kubernetes API types and checks the relations between the objects.
func TestKubernetesSchema(t *testing.T) {
	files, _ := filepath.Glob("k8s/*.yaml")
	objs, err := decodeManifests(k8sDecoder(t), files)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 17 {
		t.Errorf("decoded %d objects from %v, want at least 17", len(objs), files)
	}
	for _, err := range checkObjects(objs) {
		t.Error(err)
	}
}

// TestKubernetesSchemaRejectsBroken checks that each broken manifest in
// testdata fails strict decoding or the relation checks.
func TestKubernetesSchemaRejectsBroken(t *testing.T) {
	files, _ := filepath.Glob("testdata/k8s-broken-*.yaml")
	if len(files) < 4 {
		t.Fatalf("want broken manifests in testdata, got %v", files)
	}
	dec := k8sDecoder(t)
	good, _ := filepath.Glob("k8s/config.yaml") // the ConfigMap and Secret the broken ones name
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			objs, err := decodeManifests(dec, append(good, f))
			if err == nil {
				errs := checkObjects(objs)
				if len(errs) == 0 {
					t.Fatalf("%s passes", f)
				}
				err = errors.Join(errs...)
			}
			t.Logf("rejected: %v", err)
		})
	}
}
