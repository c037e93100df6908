package lab

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Chains of the lab table. Loss runs before the service rules so that a dropped segment never reaches them.
const (
	inputChain = "input"
	lossChain  = "loss"
)

// fwFamily is the family of the lab table. With the Linux peer it is inet, on the input hook of the server's
// kernel. With the lwip peer the kernel only bridges the server's frames, so no input hook sees them (and this
// kernel may lack reject in the bridge family): the table is netdev, on the ingress hook of the server's veth end,
// where reject answers with the ICMP error out of the same port, from the server's address.
func (l Lab) fwFamily() nftables.TableFamily {
	if l.peer() == PeerLWIP {
		return nftables.TableFamilyNetdev
	}
	return nftables.TableFamilyINet
}

// fwFamilyName is fwFamily as nft names it.
func (l Lab) fwFamilyName() string {
	if l.fwFamily() == nftables.TableFamilyNetdev {
		return "netdev"
	}
	return "inet"
}

func (l Lab) labTable() *nftables.Table {
	return &nftables.Table{Family: l.fwFamily(), Name: tableName}
}

func (l Lab) labChain(t *nftables.Table, name string) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriorityFilter
	if name == lossChain {
		prio = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)
	}
	c := &nftables.Chain{
		Name:     name,
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: prio,
		Policy:   &accept,
	}
	if t.Family == nftables.TableFamilyNetdev {
		c.Hooknum, c.Device = nftables.ChainHookIngress, l.ServerIf
	}
	return c
}

// withNFT runs fn with an nftables connection inside the server namespace.
func (l Lab) withNFT(fn func(c *nftables.Conn) error) error {
	h, err := openNS(l.ServerNS)
	if err != nil {
		return err
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		return fmt.Errorf("nftables connection: %w", err)
	}
	return fn(c)
}

// ensureFirewall creates the lab table and its chains if missing and (re)writes the service rules, in one atomic
// batch. The loss chain keeps its rule.
func (l Lab) ensureFirewall() error {
	return l.withNFT(func(c *nftables.Conn) error {
		t := c.AddTable(l.labTable())
		in := c.AddChain(l.labChain(t, inputChain))
		c.AddChain(l.labChain(t, lossChain))
		c.FlushChain(in)
		for _, r := range serviceRules() {
			c.AddRule(&nftables.Rule{Table: t, Chain: in, Exprs: r})
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: write table %s: %w", tableName, err)
		}
		return nil
	})
}

// serviceRules returns the rules behind the dropped, rejected and prohibited ports:
//
//	tcp dport 82 tcp flags & (syn|ack) == syn drop
//	tcp dport 83 reject with icmpx port-unreachable
//	tcp dport 84 reject with icmpx admin-prohibited
func serviceRules() [][]expr.Any {
	synOnly := []expr.Any{
		// tcp flags is byte 13 of the TCP header; keep SYN (0x02) and ACK (0x10), require SYN alone.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0x00}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}},
	}
	return [][]expr.Any{
		concat(tcpDport(PortDropped), synOnly, []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}),
		concat(tcpDport(PortRejected), []expr.Any{
			&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH},
		}),
		concat(tcpDport(PortProhibited), []expr.Any{
			&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED},
		}),
	}
}

// isTCP matches TCP over either IP version (meta l4proto tcp).
func isTCP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
}

// tcpDport matches TCP segments to port.
func tcpDport(port uint16) []expr.Any {
	return concat(isTCP(), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	})
}

// lossRule drops percent % of the TCP segments arriving on ifname:
//
//	iifname IF meta l4proto tcp numgen random mod 100 < PERCENT drop
//
// numgen writes a host-order number; cmp compares bytes as big-endian, so the number is converted first, as nft
// itself does.
func lossRule(ifname string, percent int) []expr.Any {
	return concat([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameData(ifname)},
	}, isTCP(), []expr.Any{
		&expr.Numgen{Register: 1, Type: unix.NFT_NG_RANDOM, Modulus: 100},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(uint32(percent))},
		&expr.Verdict{Kind: expr.VerdictDrop},
	})
}

// ifnameData is an interface name as nftables compares it: NUL-padded to IFNAMSIZ.
func ifnameData(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// SetLoss makes the server namespace drop percent % (0 to 100) of the TCP segments arriving on its veth, chosen at
// random by nftables numgen; 0 removes the loss. The lab must be up.
func (l Lab) SetLoss(percent int) error {
	if err := l.check(); err != nil {
		return err
	}
	if percent < 0 || percent > 100 {
		return fmt.Errorf("lab: set loss: percent %d outside 0..100", percent)
	}
	err := l.withNFT(func(c *nftables.Conn) error {
		if l.Peer == "" {
			p, err := l.runningPeer()
			if err != nil {
				return err
			}
			l.Peer = p
		}
		ok, err := tableExists(c, l.fwFamily())
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("table %s missing (run lab up first)", tableName)
		}
		t := l.labTable()
		ch := c.AddChain(l.labChain(t, lossChain))
		c.FlushChain(ch)
		if percent > 0 {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: lossRule(l.ServerIf, percent)})
		}
		return c.Flush()
	})
	if err != nil {
		return fmt.Errorf("lab: set loss: %w", err)
	}
	return nil
}

// tableExists reports whether the lab table exists.
func tableExists(c *nftables.Conn, family nftables.TableFamily) (bool, error) {
	ts, err := c.ListTablesOfFamily(family)
	if err != nil {
		return false, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == tableName {
			return true, nil
		}
	}
	return false, nil
}

// firewallState reports whether the table with both chains exists and which loss it applies.
func (l Lab) firewallState() (ok bool, loss int, err error) {
	err = l.withNFT(func(c *nftables.Conn) error {
		exists, err := tableExists(c, l.fwFamily())
		if err != nil || !exists {
			return err
		}
		chains, err := c.ListChainsOfTableFamily(l.fwFamily())
		if err != nil {
			return fmt.Errorf("list nftables chains: %w", err)
		}
		found := map[string]bool{}
		for _, ch := range chains {
			if ch.Table.Name == tableName {
				found[ch.Name] = true
			}
		}
		if !found[inputChain] || !found[lossChain] {
			return nil
		}
		t := l.labTable()
		rules, err := c.GetRules(t, l.labChain(t, inputChain))
		if err != nil {
			return fmt.Errorf("list nftables rules: %w", err)
		}
		ok = len(rules) == len(serviceRules())
		rules, err = c.GetRules(t, l.labChain(t, lossChain))
		if err != nil {
			return fmt.Errorf("list nftables rules: %w", err)
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if cmp, isCmp := e.(*expr.Cmp); isCmp && cmp.Op == expr.CmpOpLt && len(cmp.Data) == 4 {
					loss = int(binary.BigEndian.Uint32(cmp.Data))
				}
			}
		}
		return nil
	})
	return ok, loss, err
}

// removeFirewall deletes the lab table, of either peer's family, if it exists.
func (l Lab) removeFirewall() error {
	return l.withNFT(func(c *nftables.Conn) error {
		for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyNetdev} {
			ok, err := tableExists(c, f)
			if err != nil {
				return err
			}
			if ok {
				c.DelTable(&nftables.Table{Family: f, Name: tableName})
			}
		}
		return c.Flush()
	})
}
