package cli

import (
	"fmt"
	"runtime/debug"
)

// version is set at build time with
// -ldflags "-X github.com/moonvault/moonvault/internal/cli.version=v1.2.3";
// otherwise the module version and VCS revision from the build info show.
var version = ""

func versionString() string {
	v, rev, dirty := version, "", false
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	out := "moonvault " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " (" + rev
		if dirty {
			out += ", modified"
		}
		out += ")"
	}
	if ok {
		out += " " + bi.GoVersion
	}
	return out
}

func runVersion(g *globals, args []string) error {
	if _, err := g.flags("version", args, nil); err != nil {
		return err
	}
	if g.format == "json" {
		return g.print(map[string]string{"version": versionString()})
	}
	_, err := fmt.Fprintln(g.stdout, versionString())
	return err
}
