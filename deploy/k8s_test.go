package deploy

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/santhosh-tekuri/jsonschema/v6"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/oneoffice/provisioner/shared/amqpx"
)

var update = flag.Bool("update", false, "rewrite k8s/base/prometheusrule.yaml from prometheus/rules")

// kinds are the types every rendered object must decode into, by
// apiVersion/kind: the published Go API types of Kubernetes and the
// Prometheus operator. KEDA's objects are checked against JSON schemas
// instead (schemas below), and decoded into the few fields the tests read.
var kinds = map[string]func() any{
	"v1/ConfigMap":                            func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"v1/PersistentVolumeClaim":                func() any { return new(corev1.PersistentVolumeClaim) },
	"v1/Namespace":                            func() any { return new(corev1.Namespace) },
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"batch/v1/Job":                            func() any { return new(batchv1.Job) },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return new(scaledObject) },
	"keda.sh/v1alpha1/TriggerAuthentication":  func() any { return new(triggerAuthentication) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monv1.PrometheusRule) },
}

// schemas validate the kinds whose Go API types are not imported: KEDA's
// module would raise the gateway's own dependencies (fasthttp, the
// Prometheus client) through its requirements. The schemas are KEDA's
// published CRD schemas in kubeconform's strict JSON-schema form (k8s/schemas).
var schemas = map[string]string{
	"keda.sh/v1alpha1/ScaledObject":          "k8s/schemas/keda.sh/scaledobject_v1alpha1.json",
	"keda.sh/v1alpha1/TriggerAuthentication": "k8s/schemas/keda.sh/triggerauthentication_v1alpha1.json",
}

// scaledObject and triggerAuthentication are the fields of KEDA's types
// that the tests read; the schema has checked the rest.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		Triggers []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// validateSchema checks j against the JSON schema of key.
func validateSchema(t *testing.T, key string, j []byte) error {
	t.Helper()
	c := jsonschema.NewCompiler()
	f, err := os.Open(schemas[key])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemas[key], err)
	}
	if err := c.AddResource(schemas[key], doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(schemas[key])
	if err != nil {
		t.Fatalf("%s: %v", schemas[key], err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	return sch.Validate(v)
}

// rendered is one kustomization built and decoded.
type rendered struct {
	objs   map[string]any // by kind/name
	byKind map[string][]any
}

func (r *rendered) get(kind, name string) any { return r.objs[kind+"/"+name] }

// render builds dir with kustomize and decodes every object strictly: an
// unknown or duplicated field, a field of the wrong case or type, or a kind
// not in kinds fails the test.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := &rendered{objs: map[string]any{}, byKind: map[string][]any{}}
	for _, res := range rm.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatal(err)
		}
		gvk := res.GetGvk()
		key := strings.TrimPrefix(gvk.Group+"/"+gvk.Version+"/"+gvk.Kind, "/")
		newObj, ok := kinds[key]
		if !ok {
			t.Errorf("%s %s: a kind the test does not know", key, res.GetName())
			continue
		}
		obj := newObj()
		if _, ok := schemas[key]; ok {
			if err := validateSchema(t, key, j); err != nil {
				t.Errorf("%s %s: %v", key, res.GetName(), err)
			}
		}
		strict, err := sigsjson.UnmarshalStrict(j, obj)
		if err != nil {
			t.Errorf("%s %s: %v", key, res.GetName(), err)
			continue
		}
		for _, e := range strict {
			if _, partial := schemas[key]; !partial || !strings.Contains(e.Error(), "unknown field") {
				t.Errorf("%s %s: %v", key, res.GetName(), e)
			}
		}
		name := gvk.Kind + "/" + res.GetName()
		if _, dup := r.objs[name]; dup {
			t.Errorf("two objects %s", name)
		}
		r.objs[name] = obj
		r.byKind[gvk.Kind] = append(r.byKind[gvk.Kind], obj)
	}
	return r
}

var layouts = []string{"k8s/base", "k8s/overlays/example"}

func TestKubernetesObjectsDecodeStrictly(t *testing.T) {
	for _, dir := range layouts {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			for _, want := range []string{"ConfigMap/oneoffice-config", "Secret/oneoffice-secrets",
				"Deployment/oneoffice-gateway", "Service/oneoffice-gateway", "HorizontalPodAutoscaler/oneoffice-gateway",
				"PodDisruptionBudget/oneoffice-gateway", "Deployment/oneoffice-worker", "Service/oneoffice-worker",
				"ScaledObject/oneoffice-worker", "TriggerAuthentication/oneoffice-rabbitmq",
				"PodDisruptionBudget/oneoffice-worker", "PersistentVolumeClaim/oneoffice-tenants",
				"Job/oneoffice-migrate", "ServiceMonitor/oneoffice-gateway", "ServiceMonitor/oneoffice-worker",
				"ServiceMonitor/oneoffice-rabbitmq", "PrometheusRule/oneoffice"} {
				if r.objs[want] == nil {
					t.Errorf("no %s", want)
				}
			}
		})
	}
}

// pods are the pod templates of the Deployments and the Job.
func pods(r *rendered) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range r.byKind["Deployment"] {
		d := o.(*appsv1.Deployment)
		out["Deployment/"+d.Name] = &d.Spec.Template
	}
	for _, o := range r.byKind["Job"] {
		j := o.(*batchv1.Job)
		out["Job/"+j.Name] = &j.Spec.Template
	}
	return out
}

// Every pod runs non-root, read-only, without capabilities, with resources,
// and with its settings from the ConfigMap and Secret that exist.
func TestKubernetesPodsAreHardened(t *testing.T) {
	for _, dir := range layouts {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			for name, pt := range pods(r) {
				ps := pt.Spec.SecurityContext
				if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
					t.Errorf("%s: the pod does not run as a non-root user", name)
				}
				for _, c := range pt.Spec.Containers {
					sc := c.SecurityContext
					if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
						sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
						sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
						t.Errorf("%s/%s: want a read-only root, no privilege escalation, every capability dropped", name, c.Name)
					}
					if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s/%s: want CPU and memory requests and a memory limit", name, c.Name)
					}
					for _, ef := range c.EnvFrom {
						switch {
						case ef.ConfigMapRef != nil && r.get("ConfigMap", ef.ConfigMapRef.Name) == nil:
							t.Errorf("%s/%s: no ConfigMap %s", name, c.Name, ef.ConfigMapRef.Name)
						case ef.SecretRef != nil && r.get("Secret", ef.SecretRef.Name) == nil:
							t.Errorf("%s/%s: no Secret %s", name, c.Name, ef.SecretRef.Name)
						}
					}
					if len(c.EnvFrom) != 2 {
						t.Errorf("%s/%s: want its settings from the ConfigMap and the Secret", name, c.Name)
					}
				}
			}
		})
	}
}

// The gateways and workers are probed on their admin port (METRICS_ADDR):
// readiness on /readyz, liveness on /healthz.
func TestKubernetesProbesUseTheAdminPort(t *testing.T) {
	r := render(t, "k8s/overlays/example")
	cm := r.get("ConfigMap", "oneoffice-config").(*corev1.ConfigMap)
	admin := cm.Data["METRICS_ADDR"]
	for _, name := range []string{"oneoffice-gateway", "oneoffice-worker"} {
		d := r.get("Deployment", name).(*appsv1.Deployment)
		c := d.Spec.Template.Spec.Containers[0]
		port := -1
		for _, p := range c.Ports {
			if p.Name == "metrics" {
				port = int(p.ContainerPort)
			}
		}
		if !strings.HasSuffix(admin, fmt.Sprintf(":%d", port)) {
			t.Errorf("%s: port metrics is %d, METRICS_ADDR %s", name, port, admin)
		}
		for what, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[what]
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "metrics" {
				t.Errorf("%s: want a %s probe GET %s on port metrics, got %+v", name, what, want, probe)
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: the selector does not match its pods", name)
		}
	}
	if c := r.get("Deployment", "oneoffice-worker").(*appsv1.Deployment).Spec.Template.Spec.Containers[0]; !slices.Equal(c.Command, []string{"/usr/local/bin/worker"}) {
		t.Errorf("the worker Deployment runs %v", c.Command)
	}
	if j := r.get("Job", "oneoffice-migrate").(*batchv1.Job); !slices.Equal(j.Spec.Template.Spec.Containers[0].Args, []string{"migrate"}) {
		t.Errorf("the migration Job runs %v", j.Spec.Template.Spec.Containers[0].Args)
	}
}

// Services, disruption budgets, autoscalers and monitors reach what they name.
func TestKubernetesReferencesResolve(t *testing.T) {
	r := render(t, "k8s/overlays/example")
	podLabels := map[string]labels.Set{}
	for name, pt := range pods(r) {
		podLabels[name] = labels.Set(pt.Labels)
	}
	matches := func(sel labels.Selector) []string {
		var got []string
		for name, l := range podLabels {
			if sel.Matches(l) {
				got = append(got, name)
			}
		}
		return got
	}
	for _, o := range r.byKind["Service"] {
		s := o.(*corev1.Service)
		if got := matches(labels.SelectorFromSet(s.Spec.Selector)); len(got) != 1 {
			t.Errorf("Service %s selects %v, want one Deployment", s.Name, got)
		}
	}
	for _, o := range r.byKind["PodDisruptionBudget"] {
		p := o.(*policyv1.PodDisruptionBudget)
		sel, _ := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if got := matches(sel); len(got) != 1 {
			t.Errorf("PodDisruptionBudget %s selects %v, want one Deployment", p.Name, got)
		}
	}
	hpa := r.get("HorizontalPodAutoscaler", "oneoffice-gateway").(*autoscalingv2.HorizontalPodAutoscaler)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || r.get("Deployment", ref.Name) == nil {
		t.Errorf("the gateway HPA scales %s %s", ref.Kind, ref.Name)
	}
	so := r.get("ScaledObject", "oneoffice-worker").(*scaledObject)
	if r.get("Deployment", so.Spec.ScaleTargetRef.Name) == nil || so.Spec.ScaleTargetRef.Name != "oneoffice-worker" {
		t.Errorf("the ScaledObject scales %q", so.Spec.ScaleTargetRef.Name)
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "rabbitmq" || so.Spec.Triggers[0].Metadata["queueName"] != amqpx.Queue {
		t.Fatalf("the ScaledObject does not scale on the rabbitmq queue %s: %+v", amqpx.Queue, so.Spec.Triggers)
	}
	ta := r.get("TriggerAuthentication", so.Spec.Triggers[0].AuthenticationRef.Name)
	if ta == nil {
		t.Fatalf("no TriggerAuthentication %s", so.Spec.Triggers[0].AuthenticationRef.Name)
	}
	for _, ref := range ta.(*triggerAuthentication).Spec.SecretTargetRef {
		sec, _ := r.get("Secret", ref.Name).(*corev1.Secret)
		if sec == nil || sec.StringData[ref.Key] == "" || strings.Contains(sec.StringData[ref.Key], ",") {
			t.Errorf("TriggerAuthentication: parameter %s wants one URL in Secret %s key %s", ref.Parameter, ref.Name, ref.Key)
		}
	}
	services := map[string]*corev1.Service{}
	for _, o := range r.byKind["Service"] {
		s := o.(*corev1.Service)
		services[s.Name] = s
	}
	for _, o := range r.byKind["ServiceMonitor"] {
		sm := o.(*monv1.ServiceMonitor)
		if sm.Name == "oneoffice-rabbitmq" {
			continue // RabbitMQ's own Services, made by its operator
		}
		sel, _ := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		found := false
		for _, s := range services {
			if !sel.Matches(labels.Set(s.Labels)) {
				continue
			}
			for _, p := range s.Spec.Ports {
				found = found || p.Name == sm.Spec.Endpoints[0].Port
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s finds no Service port %s", sm.Name, sm.Spec.Endpoints[0].Port)
		}
	}
}

// The workers share one ReadWriteMany tenant volume at STORAGE_ROOT.
func TestKubernetesTenantVolumeIsShared(t *testing.T) {
	r := render(t, "k8s/overlays/example")
	root := r.get("ConfigMap", "oneoffice-config").(*corev1.ConfigMap).Data["STORAGE_ROOT"]
	pvc := r.get("PersistentVolumeClaim", "oneoffice-tenants").(*corev1.PersistentVolumeClaim)
	if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}) {
		t.Errorf("the tenant claim is %v, want ReadWriteMany", pvc.Spec.AccessModes)
	}
	spec := r.get("Deployment", "oneoffice-worker").(*appsv1.Deployment).Spec.Template.Spec
	mounted := false
	for _, m := range spec.Containers[0].VolumeMounts {
		for _, v := range spec.Volumes {
			mounted = mounted || (m.Name == v.Name && m.MountPath == root &&
				v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name)
		}
	}
	if !mounted {
		t.Errorf("the workers do not mount %s at STORAGE_ROOT %s", pvc.Name, root)
	}
}

// The image and runtime settings agree with deploy/Dockerfile and the
// launchers' scripts/lib/godebug.sh; the overlay swaps the image.
func TestKubernetesRuntimeSettings(t *testing.T) {
	want := launcherGODEBUG(t)
	r := render(t, "k8s/overlays/example")
	cm := r.get("ConfigMap", "oneoffice-config").(*corev1.ConfigMap)
	if cm.Data["GODEBUG"] != want || cm.Data["GOMAXPROCS"] != "1" {
		t.Errorf("GODEBUG %q GOMAXPROCS %q, want %s and 1", cm.Data["GODEBUG"], cm.Data["GOMAXPROCS"], want)
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "GODEBUG="+want) {
		t.Errorf("deploy/Dockerfile does not set GODEBUG=%s", want)
	}
	for name, pt := range pods(r) {
		if img := pt.Spec.Containers[0].Image; img != "registry.example.com/oneoffice/provisioner:1.0.0" {
			t.Errorf("%s: image %s", name, img)
		}
	}
}

// The PrometheusRule carries exactly the groups of prometheus/rules, which
// prom-check.sh checks with promtool and a live Prometheus. With -update it
// is written from them.
func TestPrometheusRuleIsTheRuleFiles(t *testing.T) {
	var groups []any
	for _, f := range []string{"prometheus/rules/recording.yml", "prometheus/rules/alerts.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Groups []any `json:"groups"`
		}
		if err := yaml.UnmarshalStrict(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		groups = append(groups, doc.Groups...)
	}
	const path = "k8s/base/prometheusrule.yaml"
	if *update {
		rule := map[string]any{"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
			"metadata": map[string]any{"name": "oneoffice"}, "spec": map[string]any{"groups": groups}}
		b, err := yaml.Marshal(rule)
		if err != nil {
			t.Fatal(err)
		}
		head := "# Generated from deploy/prometheus/rules/{recording,alerts}.yml by\n" +
			"#   go test ./deploy/ -run TestPrometheusRuleIsTheRuleFiles -update\n" +
			"# Do not edit: change the rule files and regenerate.\n"
		if err := os.WriteFile(path, append([]byte(head), b...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Spec.Groups, groups) {
		t.Errorf("%s differs from prometheus/rules: run go test ./deploy/ -run TestPrometheusRuleIsTheRuleFiles -update", path)
	}
}
