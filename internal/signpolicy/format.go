package signpolicy

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/moonvault/moonvault/internal/intent"
)

// chainUnit names a chain's native coin and base unit. Amounts from Small
// base units up are shown in the coin ("2.1 ETH"), smaller ones in the base
// unit ("5000 wei"), so that neither a long run of zeros nor a long number
// hides the size.
type chainUnit struct {
	coin, base string
	decimals   int
	small      *big.Int
}

var chainUnits = map[string]chainUnit{
	intent.ChainEthereum: {"ETH", "wei", 18, big.NewInt(1_000_000_000_000)}, // 10^-6 ETH
	intent.ChainBitcoin:  {"BTC", "sats", 8, big.NewInt(100_000)},           // 0.001 BTC
	intent.ChainSolana:   {"SOL", "lamports", 9, big.NewInt(1_000_000)},     // 0.001 SOL
}

// FormatAmount renders v base units of chain's native coin for a human:
// "2.1 ETH", "0.0015 BTC", "5000 lamports". Unknown chains show base units.
func FormatAmount(chain string, v *big.Int) string {
	if v == nil {
		v = new(big.Int)
	}
	u, ok := chainUnits[chain]
	if !ok {
		return v.String() + " base units"
	}
	if v.Sign() != 0 && new(big.Int).Abs(v).Cmp(u.small) < 0 {
		return v.String() + " " + u.base
	}
	return decimalString(v, u.decimals) + " " + u.coin
}

// decimalString renders v / 10^decimals exactly, without trailing zeros.
func decimalString(v *big.Int, decimals int) string {
	neg := v.Sign() < 0
	s := new(big.Int).Abs(v).String()
	if len(s) <= decimals {
		s = strings.Repeat("0", decimals-len(s)+1) + s
	}
	whole, frac := s[:len(s)-decimals], strings.TrimRight(s[len(s)-decimals:], "0")
	if neg {
		whole = "-" + whole
	}
	if frac == "" {
		return whole
	}
	return whole + "." + frac
}

// FormatWindow renders a limit window as "24 h", "90 min", "7 d".
func FormatWindow(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d d", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%d h", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}
