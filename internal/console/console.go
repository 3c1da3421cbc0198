// Package console holds the web console: static ES modules, styles and two
// vendored libraries, embedded in the binary so that `go build` alone ships
// it. It has no build step. internal/httpapi serves it at /ui/ with its own
// security headers; every action it takes is a call to the public API.
package console

import (
	"embed"
	"io/fs"
)

//go:embed assets
var assets embed.FS

// Files is the console's file tree: index.html at its root.
func Files() fs.FS {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the directory is embedded at build time; it cannot be missing
	}
	return sub
}
