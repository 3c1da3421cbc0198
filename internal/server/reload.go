package server

import (
	"fmt"
	"log/slog"
	"reflect"
	"sort"

	"github.com/moonvault/moonvault/internal/config"
)

// reloadable are the settings a running node takes from a reloaded
// configuration (SIGHUP); every other change is reported as needing a
// restart (storage, HSM, listener, TLS files, seal wrap...).
var reloadable = map[string]bool{
	"log_level":         true,
	"max_request_bytes": true,
	"audit_max_bytes":   true,
}

// ReloadConfig applies the settings of next that can change safely while
// serving: the log level, the request size limit and the audit file's
// rotation size. It returns the names of the settings it applied and of
// those that changed but need a restart. An invalid next changes nothing.
func (n *Node) ReloadConfig(next config.Server) (applied, restart []string, err error) {
	if err := next.Validate(); err != nil {
		return nil, nil, fmt.Errorf("reloaded configuration is invalid, nothing changed: %w", err)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(next.LogLevel)); err != nil {
		return nil, nil, fmt.Errorf("log_level %q: use debug, info, warn or error; nothing changed", next.LogLevel)
	}
	for _, name := range changedSettings(n.cfg, next) {
		if !reloadable[name] {
			restart = append(restart, name)
			continue
		}
		switch name {
		case "log_level":
			if n.opts.LogLevel == nil {
				restart = append(restart, name)
				continue
			}
			n.opts.LogLevel.Set(lv)
			n.cfg.LogLevel = next.LogLevel
		case "max_request_bytes":
			n.API.SetMaxBody(next.MaxRequestBytes)
			n.cfg.MaxRequestBytes = next.MaxRequestBytes
		case "audit_max_bytes":
			if n.auditFile == nil {
				restart = append(restart, name)
				continue
			}
			n.auditFile.SetMaxBytes(next.AuditMaxBytes)
			n.cfg.AuditMaxBytes = next.AuditMaxBytes
		}
		applied = append(applied, name)
	}
	return applied, restart, nil
}

// changedSettings names the settings (config names) that differ.
func changedSettings(a, b config.Server) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, jsonName(t.Field(i)))
		}
	}
	sort.Strings(out)
	return out
}

func jsonName(f reflect.StructField) string {
	name := f.Tag.Get("json")
	for i := 0; i < len(name); i++ {
		if name[i] == ',' {
			return name[:i]
		}
	}
	return name
}

// reload is the SIGHUP action: the TLS certificate, then the configuration.
func (n *Node) reload() {
	if err := n.ReloadTLS(); err != nil {
		n.log.Error("TLS reload failed; keeping the previous certificate", "err", err)
	} else {
		n.log.Info("TLS certificate reloaded")
	}
	if n.opts.Reload == nil {
		return
	}
	next, err := n.opts.Reload()
	if err != nil {
		n.log.Error("configuration reload failed; nothing changed", "err", err)
		return
	}
	applied, restart, err := n.ReloadConfig(next)
	if err != nil {
		n.log.Error("configuration reload failed", "err", err)
		return
	}
	n.log.Info("configuration reloaded", "applied", applied)
	if len(restart) > 0 {
		n.log.Warn("these settings changed but take effect only after a restart", "settings", restart)
	}
}
