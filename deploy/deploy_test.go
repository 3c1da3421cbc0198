// Package deploy holds the Kubernetes manifests; its test decodes every
// manifest strictly into the k8s.io/api types so that a typo fails CI, and
// checks the security properties the deployment promises.
package deploy

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the subset of kustomize.config.k8s.io/v1beta1
// Kustomization this repository uses; anything else is a typo until added.
type kustomization struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Namespace  string            `json:"namespace,omitempty"`
	Resources  []string          `json:"resources,omitempty"`
	Labels     []kustomizeLabels `json:"labels,omitempty"`
	Images     []kustomizeImage  `json:"images,omitempty"`
	Patches    []kustomizePatch  `json:"patches,omitempty"`
}

type kustomizeLabels struct {
	Pairs            map[string]string `json:"pairs"`
	IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	IncludeTemplates bool              `json:"includeTemplates,omitempty"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

type kustomizePatch struct {
	Path   string           `json:"path,omitempty"`
	Patch  string           `json:"patch,omitempty"`
	Target *kustomizeTarget `json:"target,omitempty"`
}

type kustomizeTarget struct {
	Group   string `json:"group,omitempty"`
	Version string `json:"version,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
}

// jsonPatchOp is one RFC 6902 operation of an inline patch.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// object is one decoded manifest document.
type object struct {
	file string
	kind string
	obj  any
}

// newObject maps apiVersion and kind to the Go type a document must decode into.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "kustomize.config.k8s.io/v1beta1/Kustomization":
		return &kustomization{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion %q kind %q: add it to newObject", apiVersion, kind)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments splits a multi-document YAML stream, dropping documents
// that hold only comments and blank lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range docSeparator.Split(string(data), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
				break
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decodeDocument decodes one YAML document strictly: unknown fields and
// duplicate keys are errors.
func decodeDocument(doc []byte) (string, any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return "", nil, fmt.Errorf("reading apiVersion/kind: %w", err)
	}
	obj, err := newObject(head.APIVersion, head.Kind)
	if err != nil {
		return "", nil, err
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return "", nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	return head.Kind, obj, nil
}

// loadAll decodes every YAML file under dir.
func loadAll(t *testing.T, dir string) []object {
	t.Helper()
	var objs []object
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "prometheus" {
			return filepath.SkipDir // Prometheus configuration: prometheus_test.go
		}
		if d.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, doc := range splitDocuments(data) {
			kind, obj, err := decodeDocument(doc)
			if err != nil {
				t.Errorf("%s document %d: %v", p, i+1, err)
				continue
			}
			objs = append(objs, object{file: p, kind: kind, obj: obj})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := loadAll(t, ".")
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
	}
	for _, k := range []string{"Kustomization", "StatefulSet", "Service", "ConfigMap", "Secret", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"} {
		if kinds[k] == 0 {
			t.Errorf("no %s found under deploy/", k)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"typo in securityContext", `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: x}
spec:
  template:
    spec:
      containers:
        - name: x
          securityContext:
            readOnlyRootFilesytem: true
`, "readOnlyRootFilesytem"},
		{"typo in kustomization", `
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resource: [a.yaml]
`, "resource"},
		{"duplicate key", `
apiVersion: v1
kind: ServiceAccount
metadata: {name: x}
automountServiceAccountToken: false
automountServiceAccountToken: true
`, "automountServiceAccountToken"},
		{"unknown kind", `
apiVersion: v1
kind: Pod
metadata: {name: x}
`, "unknown"},
		{"wrong type", `
apiVersion: v1
kind: Service
metadata: {name: x}
spec: {ports: [{port: "https"}]}
`, "port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeDocument([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decodeDocument = %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if got := len(splitDocuments([]byte("# only a comment\n---\na: 1\n---\n\n"))); got != 1 {
		t.Errorf("splitDocuments kept %d documents, want 1", got)
	}
}

func byKind[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestKustomizations(t *testing.T) {
	for _, o := range loadAll(t, ".") {
		k, ok := o.obj.(*kustomization)
		if !ok {
			continue
		}
		dir := filepath.Dir(o.file)
		if filepath.Base(o.file) != "kustomization.yaml" {
			t.Errorf("%s: a Kustomization must be named kustomization.yaml", o.file)
		}
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s: resource %q: %v", o.file, r, err)
			}
		}
		if filepath.Base(dir) == "base" {
			// Every manifest in the base is listed, so none is silently left out.
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			for _, f := range files {
				if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(k.Resources, b) {
					t.Errorf("%s: %s is not listed in resources", o.file, b)
				}
			}
		}
		for _, p := range k.Patches {
			if p.Patch == "" {
				continue
			}
			var ops []jsonPatchOp
			if err := yaml.UnmarshalStrict([]byte(p.Patch), &ops); err != nil {
				t.Errorf("%s: inline patch: %v", o.file, err)
			}
			for _, op := range ops {
				if op.Path == "/spec/template/spec/runtimeClassName" {
					v, _ := op.Value.(string)
					if op.Op != "replace" || !strings.HasPrefix(v, "kata-qemu-") {
						t.Errorf("%s: runtimeClassName patch %+v", o.file, op)
					}
					want := "kata-qemu-" + filepath.Base(dir)
					if v != want {
						t.Errorf("%s: overlay %s sets runtimeClassName %q, want %q", o.file, filepath.Base(dir), v, want)
					}
				}
			}
		}
	}
}

func mountFor(c corev1.Container, file string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if file == m.MountPath || strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(spec corev1.PodSpec, name string) corev1.Volume {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	return corev1.Volume{}
}

func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func checkContainerSecurity(t *testing.T, where string, pod *corev1.PodSecurityContext, c corev1.Container, wantAdd []corev1.Capability) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", where)
		return
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && pod != nil && pod.RunAsNonRoot != nil && *pod.RunAsNonRoot)
	if !nonRoot {
		t.Errorf("%s: runAsNonRoot is not true", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", where)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: capabilities do not drop ALL", where)
	} else if !slices.Equal(sc.Capabilities.Add, wantAdd) {
		t.Errorf("%s: capabilities add %v, want %v", where, sc.Capabilities.Add, wantAdd)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && pod != nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
	}
}

func TestStatefulSetSecurity(t *testing.T) {
	objs := loadAll(t, ".")
	sets := byKind[*appsv1.StatefulSet](objs)
	if len(sets) == 0 {
		t.Fatal("no StatefulSet")
	}
	for _, s := range sets {
		spec := s.Spec.Template.Spec
		where := "StatefulSet " + s.Name
		if spec.RuntimeClassName == nil || !strings.HasPrefix(*spec.RuntimeClassName, "kata-") {
			t.Errorf("%s: runtimeClassName %v is not a Kata (Confidential Containers) class", where, spec.RuntimeClassName)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false", where)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
			t.Errorf("%s: pod securityContext must run as non-root uid 65532", where)
		}
		for _, c := range spec.InitContainers {
			checkContainerSecurity(t, where+" init container "+c.Name, psc, c, nil)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers, want 1", where, len(spec.Containers))
		}
		c := spec.Containers[0]
		checkContainerSecurity(t, where+" container "+c.Name, psc, c, []corev1.Capability{"IPC_LOCK"})
		checkProbes(t, where, c)
		checkSecretsAndMounts(t, where, spec, c)
	}
}

func checkProbes(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", where, name)
			continue
		}
		u := p.HTTPGet.Path
		if path.Clean(strings.SplitN(u, "?", 2)[0]) != "/v1/sys/health" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s: %s probe %s %s, want HTTPS /v1/sys/health", where, name, p.HTTPGet.Scheme, u)
		}
	}
	if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path != "/v1/sys/health" {
		t.Errorf("%s: readiness must be ready only when unsealed (plain /v1/sys/health), got %s", where, p.HTTPGet.Path)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p != nil && p.HTTPGet != nil && (!strings.Contains(p.HTTPGet.Path, "sealedcode=200") || !strings.Contains(p.HTTPGet.Path, "uninitcode=200")) {
			t.Errorf("%s: %s probe must tolerate sealed and uninitialised, got %s", where, name, p.HTTPGet.Path)
		}
	}
}

func checkSecretsAndMounts(t *testing.T, where string, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	for _, flag := range []string{"-tls-cert-file", "-tls-key-file"} {
		f := flagValue(c.Args, flag)
		m, ok := mountFor(c, f)
		if f == "" || !ok {
			t.Errorf("%s: %s %q is not on a mounted volume", where, flag, f)
			continue
		}
		if v := volume(spec, m.Name); v.Secret == nil || !m.ReadOnly {
			t.Errorf("%s: %s must come from a Secret mounted read-only (volume %q)", where, flag, m.Name)
		}
	}
	if flagValue(c.Args, "-storage") != "postgres" {
		t.Errorf("%s: args %v lack -storage postgres", where, c.Args)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"MOONVAULT_POSTGRES_URL", "MOONVAULT_HSM_PIN"} {
		e, ok := env[name]
		if !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s: %s must come from a Secret (secretKeyRef)", where, name)
		}
	}
	for _, e := range c.Env {
		if e.Value != "" && regexp.MustCompile(`PIN|PASSWORD|TOKEN|SECRET|_URL`).MatchString(e.Name) && e.Name != "MOONVAULT_HSM_TOKEN_LABEL" {
			t.Errorf("%s: %s carries a literal value; secrets come from Secrets", where, e.Name)
		}
	}
	if env["MOONVAULT_REQUIRE_TEE"].Value != "true" {
		t.Errorf("%s: MOONVAULT_REQUIRE_TEE is not \"true\"", where)
	}
	for _, name := range []string{"MOONVAULT_HSM_TOKEN_LABEL", "MOONVAULT_HSM_KEY_LABEL"} {
		if env[name].Value == "" {
			t.Errorf("%s: %s is not set", where, name)
		}
	}
	lib := env["MOONVAULT_HSM_LIB"].Value
	if m, ok := mountFor(c, lib); !ok || !m.ReadOnly {
		t.Errorf("%s: MOONVAULT_HSM_LIB %q is not on a read-only mounted volume", where, lib)
	}
	if m, ok := mountFor(c, "/tmp/x"); !ok || volume(spec, m.Name).EmptyDir == nil {
		t.Errorf("%s: /tmp is not an emptyDir", where)
	}
	if m, ok := mountFor(c, "/etc/moonvault/config.hcl"); !ok || volume(spec, m.Name).ConfigMap == nil || !m.ReadOnly {
		t.Errorf("%s: the config file is not a read-only ConfigMap mount", where)
	}
}

func TestServiceAccountsDoNotMountTokens(t *testing.T) {
	sas := byKind[*corev1.ServiceAccount](loadAll(t, "."))
	if len(sas) == 0 {
		t.Fatal("no ServiceAccount")
	}
	for _, sa := range sas {
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s: automountServiceAccountToken is not false", sa.Name)
		}
	}
}

func TestNetworkPolicy(t *testing.T) {
	nps := byKind[*networkingv1.NetworkPolicy](loadAll(t, "."))
	if len(nps) == 0 {
		t.Fatal("no NetworkPolicy")
	}
	for _, np := range nps {
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			t.Errorf("NetworkPolicy %s: must restrict both ingress and egress", np.Name)
		}
		for _, r := range np.Spec.Ingress {
			if len(r.From) == 0 {
				t.Errorf("NetworkPolicy %s: an ingress rule admits every source", np.Name)
			}
			for _, p := range r.Ports {
				if p.Port == nil || p.Port.IntValue() != 8200 {
					t.Errorf("NetworkPolicy %s: ingress port %v, want only 8200", np.Name, p.Port)
				}
			}
		}
		egress := map[int]bool{}
		for _, r := range np.Spec.Egress {
			if len(r.To) == 0 {
				t.Errorf("NetworkPolicy %s: an egress rule admits every destination", np.Name)
			}
			for _, p := range r.Ports {
				egress[p.Port.IntValue()] = true
			}
		}
		if !egress[5432] || !egress[53] || len(egress) != 3 {
			t.Errorf("NetworkPolicy %s: egress ports %v, want PostgreSQL 5432, DNS 53 and the HSM", np.Name, egress)
		}
	}
	if len(byKind[*policyv1.PodDisruptionBudget](loadAll(t, "."))) == 0 {
		t.Error("no PodDisruptionBudget")
	}
}

// knownConfigKeys are the server configuration file's keys.
var knownConfigKeys = []string{"listen_address", "storage", "postgres_url", "tls_cert_file", "tls_key_file", "require_tee", "require_hardening", "audit_file", "log_level"}

func TestServerConfig(t *testing.T) {
	found := false
	for _, cm := range byKind[*corev1.ConfigMap](loadAll(t, ".")) {
		src, ok := cm.Data["config.hcl"]
		if !ok {
			continue
		}
		found = true
		f, diags := hclsyntax.ParseConfig([]byte(src), "config.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("ConfigMap %s config.hcl: %v", cm.Name, diags)
		}
		attrs := f.Body.(*hclsyntax.Body).Attributes
		for name := range attrs {
			if !slices.Contains(knownConfigKeys, name) {
				t.Errorf("config.hcl: unknown key %q", name)
			}
		}
		for _, want := range []struct{ key, value string }{{"require_tee", "true"}, {"require_hardening", "true"}, {"storage", `"postgres"`}, {"postgres_url", `""`}} {
			a, ok := attrs[want.key]
			if !ok {
				t.Errorf("config.hcl: %s missing", want.key)
				continue
			}
			got := string(bytes.TrimSpace(a.Expr.Range().SliceBytes([]byte(src))))
			if got != want.value {
				t.Errorf("config.hcl: %s = %s, want %s", want.key, got, want.value)
			}
		}
	}
	if !found {
		t.Fatal("no ConfigMap holds config.hcl")
	}
}

// TestDockerfile reads the Dockerfile (no Docker engine runs in CI) for the
// properties the deployment relies on.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, want := range []string{
		"FROM golang:1.26-bookworm AS build",
		"CGO_ENABLED=1",
		"go build -trimpath",
		"FROM gcr.io/distroless/base-debian12:nonroot",
		"USER 65532:65532",
		"EXPOSE 8200",
		`ENTRYPOINT ["/moonvault"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	froms := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(df, -1)
	if len(froms) < 2 {
		t.Errorf("Dockerfile is not multi-stage")
	}
	last := df[froms[len(froms)-1][0]:]
	if strings.Contains(last, "USER root") || strings.Contains(last, "USER 0") {
		t.Errorf("final stage switches to root")
	}
}
