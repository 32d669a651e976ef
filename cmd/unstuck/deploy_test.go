package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The example deployments under docs/deploy: each balancer config passes
// `unstuck lb --check` with the environment the manifests give it, and
// the pieces fit together (the DNS name the balancer resolves is the
// service the manifests define, the config file is where the balancer is
// told to read it).

// checkLB runs `unstuck lb --check --config path` with the secrets the
// deployments pass in the environment.
func checkLB(t *testing.T, path string) string {
	t.Helper()
	t.Setenv("UNSTUCK_SECRET", "example-secret-of-at-least-16-bytes")
	t.Setenv("UNSTUCK_ADMIN_TOKEN", "example-admin-token")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"lb", "--check", "--config", path}, &out, &errb); code != 0 {
		t.Fatalf("unstuck lb --check --config %s: exit %d: %s", path, code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "config ok") || strings.Contains(out.String(), "warning") {
		t.Fatalf("--check said %q", out.String())
	}
	return out.String()
}

// yamlDocs decodes every document of every YAML file in dir.
func yamlDocs(t *testing.T, dir string) []map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no YAML in %s", dir)
	}
	var docs []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var d map[string]any
			if err := dec.Decode(&d); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if d != nil {
				docs = append(docs, d)
			}
		}
	}
	return docs
}

// dig walks nested maps and lists by keys (strings) and indexes (ints).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func find(docs []map[string]any, kind, name string) map[string]any {
	for _, d := range docs {
		if d["kind"] == kind && dig(d, "metadata", "name") == name {
			return d
		}
	}
	return nil
}

// dnsBackend is the DNS discovery URL of the config's first backend.
func dnsBackend(t *testing.T, config []byte) *url.URL {
	t.Helper()
	var c struct {
		Backends []struct{ URL string } `yaml:"backends"`
	}
	if err := yaml.Unmarshal(config, &c); err != nil || len(c.Backends) == 0 {
		t.Fatalf("config: %v %+v", err, c)
	}
	u, err := url.Parse(c.Backends[0].URL)
	if err != nil || (u.Scheme != "dns" && u.Scheme != "dns+srv") {
		t.Fatalf("first backend %q is not a DNS discovery source", c.Backends[0].URL)
	}
	return u
}

func TestKubernetesExampleChecksAndFitsTogether(t *testing.T) {
	docs := yamlDocs(t, "../../docs/deploy/kubernetes")
	cm := find(docs, "ConfigMap", "unstuck-lb")
	config, _ := dig(cm, "data", "unstuck.yaml").(string)
	if config == "" {
		t.Fatal("no ConfigMap unstuck-lb with unstuck.yaml")
	}
	path := filepath.Join(t.TempDir(), "unstuck.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	checkLB(t, path)

	// dns+srv://_http._tcp.SERVICE.NAMESPACE.svc.cluster.local names a
	// headless Service with a port named http.
	u := dnsBackend(t, []byte(config))
	labels := strings.Split(u.Hostname(), ".")
	if u.Scheme != "dns+srv" || len(labels) < 5 || labels[0] != "_http" || labels[1] != "_tcp" || labels[4] != "svc" {
		t.Fatalf("backend %s: want dns+srv://_http._tcp.SERVICE.NAMESPACE.svc.cluster.local", u)
	}
	svc := find(docs, "Service", labels[2])
	if svc == nil || dig(svc, "metadata", "namespace") != labels[3] || dig(svc, "spec", "clusterIP") != "None" {
		t.Fatalf("no headless Service %s in namespace %s: %v", labels[2], labels[3], svc)
	}
	if dig(svc, "spec", "ports", 0, "name") != "http" {
		t.Fatal("the headless Service's port is not named http: no _http._tcp SRV records")
	}
	// The balancer reads the ConfigMap where it is mounted, and gets its
	// secrets from the environment.
	dep := find(docs, "Deployment", "unstuck-lb")
	c := dig(dep, "spec", "template", "spec", "containers", 0)
	args, _ := dig(c, "args").([]any)
	i := slices.Index(args, any("--config"))
	mount, _ := dig(c, "volumeMounts", 0, "mountPath").(string)
	if i < 0 || i+1 >= len(args) || args[i+1] != mount+"/unstuck.yaml" || dig(dep, "spec", "template", "spec", "volumes", 0, "configMap", "name") != "unstuck-lb" {
		t.Fatalf("the lb Deployment does not read the ConfigMap: args %v, mount %q", args, mount)
	}
	var env []string
	for _, e := range dig(c, "env").([]any) {
		env = append(env, dig(e, "name").(string))
	}
	if !slices.Contains(env, "UNSTUCK_SECRET") || !slices.Contains(env, "UNSTUCK_ADMIN_TOKEN") {
		t.Fatalf("lb env %v lacks the sticky secret or the admin token", env)
	}
	// Every file is in the kustomization.
	k, _ := os.ReadFile("../../docs/deploy/kubernetes/kustomization.yaml")
	files, _ := filepath.Glob("../../docs/deploy/kubernetes/*.yaml")
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !strings.Contains(string(k), b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
}

func TestComposeExampleChecksAndFitsTogether(t *testing.T) {
	checkLB(t, "../../docs/deploy/compose/unstuck.yaml")
	docs := yamlDocs(t, "../../docs/deploy/compose")
	var compose map[string]any
	for _, d := range docs {
		if d["services"] != nil {
			compose = d
		}
	}
	config, err := os.ReadFile("../../docs/deploy/compose/unstuck.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// dns://SERVICE:PORT names a compose service listening on PORT.
	u := dnsBackend(t, config)
	app := dig(compose, "services", u.Hostname())
	if u.Scheme != "dns" || app == nil {
		t.Fatalf("backend %s names no compose service", u)
	}
	cmd, _ := dig(app, "command").([]any)
	if i := slices.Index(cmd, any("--listen")); i < 0 || !strings.HasSuffix(cmd[i+1].(string), ":"+u.Port()) {
		t.Fatalf("service %s does not listen on %s: %v", u.Hostname(), u.Port(), cmd)
	}
	lbCmd, _ := dig(compose, "services", "lb", "command").([]any)
	vol, _ := dig(compose, "services", "lb", "volumes", 0).(string)
	if i := slices.Index(lbCmd, any("--config")); i < 0 || !strings.HasPrefix(vol, "./unstuck.yaml:"+lbCmd[i+1].(string)) {
		t.Fatalf("the lb service does not read unstuck.yaml: command %v, volume %q", lbCmd, vol)
	}
}
