package cri

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podWith(sysctls, annotations map[string]string, ns *runtimeapi.NamespaceOption) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:    &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"},
		Annotations: annotations,
		Linux:       &runtimeapi.LinuxPodSandboxConfig{Sysctls: sysctls, SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}},
	}
}

func TestValidatePodConfigSysctlsAndShm(t *testing.T) {
	hostNet := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
	hostIPC := &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}
	for _, tc := range []struct {
		name     string
		cfg      *runtimeapi.PodSandboxConfig
		field    string // "" = valid
		wantSize int64
	}{
		{"no sysctls", podWith(nil, nil, nil), "", 64 << 20},
		{"net and ipc sysctls", podWith(map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20", "net/ipv4/ping_group_range": "0 1"}, nil, nil), "", 64 << 20},
		{"node sysctl", podWith(map[string]string{"vm.overcommit_memory": "1"}, nil, nil), "config.linux.sysctls[vm.overcommit_memory]", 0},
		{"kernel.hostname", podWith(map[string]string{"kernel.hostname": "x"}, nil, nil), "config.linux.sysctls[kernel.hostname]", 0},
		{"bad name", podWith(map[string]string{"net..x": "1"}, nil, nil), "config.linux.sysctls[net..x]", 0},
		{"newline in value", podWith(map[string]string{"net.ipv4.ip_forward": "1\nvm.x=1"}, nil, nil), "config.linux.sysctls[net.ipv4.ip_forward]", 0},
		{"net sysctl on host network", podWith(map[string]string{"net.ipv4.ip_forward": "1"}, nil, hostNet), "config.linux.sysctls[net.ipv4.ip_forward]", 0},
		{"ipc sysctl on host ipc", podWith(map[string]string{"kernel.msgmax": "1"}, nil, hostIPC), "config.linux.sysctls[kernel.msgmax]", 0},
		{"ipc sysctl on host network", podWith(map[string]string{"kernel.msgmax": "1"}, nil, hostNet), "", 64 << 20},
		{"shm size", podWith(nil, map[string]string{"io.berth.shm-size": "256Mi"}, nil), "", 256 << 20},
		{"cri-o shm size", podWith(nil, map[string]string{"io.kubernetes.cri-o.ShmSize": "1G"}, nil), "", 1e9},
		{"shm size in bytes", podWith(nil, map[string]string{"io.berth.shm-size": "1048576"}, nil), "", 1 << 20},
		{"shm size garbage", podWith(nil, map[string]string{"io.berth.shm-size": "lots"}, nil), "config.annotations[io.berth.shm-size]", 0},
		{"shm size zero", podWith(nil, map[string]string{"io.berth.shm-size": "0"}, nil), "config.annotations[io.berth.shm-size]", 0},
		{"shm size huge", podWith(nil, map[string]string{"io.berth.shm-size": "2Ti"}, nil), "config.annotations[io.berth.shm-size]", 0},
		{"negative pod cpu shares", func() *runtimeapi.PodSandboxConfig {
			c := podWith(nil, nil, nil)
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: -1}
			return c
		}(), "config.linux.resources.cpu_shares", 0},
		{"bad overhead cpuset", func() *runtimeapi.PodSandboxConfig {
			c := podWith(nil, nil, nil)
			c.Linux.Overhead = &runtimeapi.LinuxContainerResources{CpusetCpus: "zero"}
			return c
		}(), "config.linux.overhead.cpuset_cpus", 0},
		{"shm size overflow", podWith(nil, map[string]string{"io.berth.shm-size": "99999999999999999999"}, nil), "config.annotations[io.berth.shm-size]", 0},
	} {
		err := validatePodConfig(tc.cfg)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if got, _ := shmSize(tc.cfg); got != tc.wantSize {
				t.Errorf("%s: shm size %d, want %d", tc.name, got, tc.wantSize)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v, want InvalidArgument naming %s", tc.name, err, tc.field)
		}
	}
}
