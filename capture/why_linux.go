package capture

import (
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// OutputChains lists this network namespace's nftables chains on the
// output hook (where a rule can drop what we send), as "family table chain
// (N rules, policy P)". iptables-legacy rules are not seen.
func OutputChains() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("capture: nftables: %w", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("capture: list nftables chains: %w", err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookOutput || ch.Table == nil {
			continue
		}
		if ch.Table.Family == nftables.TableFamilyARP || ch.Table.Family == nftables.TableFamilyBridge {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("capture: rules of %s: %w", ch.Name, err)
		}
		policy := "accept"
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			policy = "drop"
		}
		out = append(out, fmt.Sprintf("%s %s %s (%d rules, policy %s)", family(ch.Table.Family), ch.Table.Name, ch.Name, len(rules), policy))
	}
	return out, nil
}

func family(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprint(unix.NFPROTO_UNSPEC + int(f))
}
