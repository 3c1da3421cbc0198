package cli

import "fmt"

// opRotateJWT starts a new JWT signing key (admin); tokens signed with the
// previous key stay valid until they expire.
func opRotateJWT(g *globals, args []string) error {
	if _, err := g.flags("operator rotate-jwt", args, nil); err != nil {
		return err
	}
	c, err := newClient(g)
	if err != nil {
		return err
	}
	if err := c.do("POST", "/v1/auth/keys/rotate", nil, nil); err != nil {
		return err
	}
	_, err = fmt.Fprintln(g.stdout, "JWT signing key rotated: new tokens are signed with the new key.")
	return err
}
