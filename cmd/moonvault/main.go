// Command moonvault is the Moon Vault server and its command-line client.
package main

import (
	"os"

	"github.com/moonvault/moonvault/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
