package server

import (
	"fmt"
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
	typed, err := next.Resolve(config.Mode{Dev: n.opts.Dev})
	if err != nil {
		return nil, nil, fmt.Errorf("reloaded configuration is invalid, nothing changed: %w", err)
	}
	for _, name := range changedSettings(n.settings, next) {
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
			n.opts.LogLevel.Set(typed.Log.Level)
			n.settings.LogLevel, n.cfg.Log.Level = next.LogLevel, typed.Log.Level
		case "max_request_bytes":
			n.API.SetMaxBody(typed.MaxRequestBytes)
			n.settings.MaxRequestBytes, n.cfg.MaxRequestBytes = next.MaxRequestBytes, typed.MaxRequestBytes
		case "audit_max_bytes":
			if n.auditFile == nil {
				restart = append(restart, name)
				continue
			}
			n.auditFile.SetMaxBytes(typed.Audit.MaxBytes)
			n.settings.AuditMaxBytes, n.cfg.Audit.MaxBytes = next.AuditMaxBytes, typed.Audit.MaxBytes
		}
		applied = append(applied, name)
	}
	return applied, restart, nil
}

// changedSettings names the settings that differ.
func changedSettings(a, b config.Server) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i, s := range config.Settings() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
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
