// Package deploy holds no code: its tests check the deployment files of this
// directory offline. deploy_test.go loads docker-compose.yml with the Compose
// specification's own loader and checks the Dockerfile; k8s_test.go renders
// k8s/ with kustomize and decodes every object strictly into its published Go
// API type (Kubernetes, KEDA, Prometheus operator); systemd_test.go parses
// the systemd units of systemd/.
package deploy
