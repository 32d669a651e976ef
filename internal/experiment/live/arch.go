package live

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/unstuck-dev/unstuck/internal/experiment/model"
	"github.com/unstuck-dev/unstuck/lb"
)

// Descriptions say in one sentence what each architecture is, for the
// report.
var Descriptions = map[string]string{
	"sticky":   "sessions in each instance's memory; the balancer pins every user to one instance with its signed cookie",
	"store":    "sessions in the shared store, no stickiness: every request may go to any instance",
	"affinity": "sessions in the shared store with each instance's near cache; the sticky cookie keeps users where their cache is warm and spills them when their instance is overloaded or draining",
	"cookie":   "sessions sealed in the client's cookie; no stickiness, no session store",
}

// appArgs are the `unstuck app` flags that make an instance of arch, on top
// of the store's.
func appArgs(a model.Arch) []string {
	args := []string{"--near-cache=" + fmt.Sprint(a.NearCache)}
	switch a.Sessions {
	case model.SessionsMemory:
		args = append(args, "--sessions", "memory")
	case model.SessionsCookie:
		args = append(args, "--sessions", "cookie")
	default:
		args = append(args, "--sessions", "shared")
	}
	return args
}

// balancerConfig configures the balancer for arch over the given
// backends.
func balancerConfig(a model.Arch, listen string, backends []lb.BackendConfig) *lb.Config {
	cfg := &lb.Config{Listen: listen, Admin: lb.AdminConfig{Listen: "off"}, Backends: backends}
	cfg.Policy.Name = a.Policy
	cfg.Policy.Factor = a.Factor
	cfg.Sticky.Mode = "none"
	if a.Sticky {
		secret := make([]byte, 32)
		_, _ = rand.Read(secret)
		cfg.Sticky.Mode = "cookie"
		cfg.Sticky.Secrets = []string{hex.EncodeToString(secret)}
		cfg.Sticky.Spill = a.Spill
	}
	cfg.Health.Active.Path = "/healthz"
	// Two failed checks in a row, a second each: an instance slowed down
	// by a busy machine is not taken for a dead one (which, for sticky,
	// would move its users and lose their sessions). A killed instance
	// refuses connections, which the balancer sees at once anyway.
	cfg.Health.Active.Interval = 500 * time.Millisecond
	cfg.Health.Active.Timeout = time.Second
	cfg.Health.Active.Rise = 1
	cfg.Health.Active.Fall = 2
	cfg.Shutdown.Grace = time.Second
	cfg.WebSocket.CloseWindow = time.Second
	return cfg
}

// describeBalancer says how the balancer was set up, for the report.
func describeBalancer(a model.Arch) string {
	parts := []string{"policy " + a.Policy}
	if a.Sticky {
		s := "sticky cookie"
		if a.Spill {
			s += fmt.Sprintf(" with spill (c = %g)", a.Factor)
		}
		parts = append(parts, s)
	} else {
		parts = append(parts, "no stickiness")
	}
	return strings.Join(parts, ", ")
}
