package guard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Values from the kernel's uapi headers that golang.org/x/sys/unix lacks.
const (
	// nftTableFOwner is NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h, Linux
	// 5.12): the table belongs to the netlink socket that created it and is
	// deleted when that socket is released.
	nftTableFOwner = 0x2
	// nfAccept is NF_ACCEPT (linux/netfilter.h), used as the chain policy.
	nfAccept = 1
)

// Chain layout of the guard table.
const (
	chainName = "out"
	chainType = "filter"
	// chainPriority is NF_IP_PRI_RAW: before conntrack (-200), mangle, NAT
	// and filter, so the kernel RST is dropped before anything else sees it.
	chainPriority = -300
)

// Byte offsets of the fields the rule matches.
const (
	ipv4SrcOffset       = 12 // RFC 791: source address
	ipv4DstOffset       = 16 // RFC 791: destination address
	ipv6SrcOffset       = 8  // RFC 8200: source address
	ipv6DstOffset       = 24 // RFC 8200: destination address
	tcpSportOffset      = 0  // RFC 9293: source port
	tcpDportOffset      = 2  // RFC 9293: destination port
	tcpFlagsOffset      = 13 // RFC 9293: the byte holding CWR..FIN
	tcpFlagRST     byte = 0x04
)

// nftHeader returns the nfgenmsg that starts every nf_tables message: family,
// version and resource id (big endian).
func nftHeader(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

// nftMessage builds an nf_tables netlink message of type msgType with attrs.
func nftMessage(msgType int, flags netlink.HeaderFlags, attrs []netlink.Attribute) (netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | flags,
		},
		Data: append(nftHeader(unix.NFPROTO_INET, 0), data...),
	}, nil
}

// batchMessage builds NFNL_MSG_BATCH_BEGIN or NFNL_MSG_BATCH_END for the
// nf_tables subsystem.
func batchMessage(msgType int) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(msgType),
			Flags: netlink.Request,
		},
		Data: nftHeader(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func cstring(s string) []byte { return append([]byte(s), 0) }

// newTableMessage creates the owner-flagged inet table; NLM_F_EXCL makes a
// second Guard of the same process in the same namespace fail with EEXIST
// instead of silently sharing the table.
func newTableMessage(table string) (netlink.Message, error) {
	return nftMessage(unix.NFT_MSG_NEWTABLE, netlink.Create|netlink.Excl, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstring(table)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: be32(nftTableFOwner)},
	})
}

// delTableMessage deletes the table with everything in it.
func delTableMessage(table string) (netlink.Message, error) {
	return nftMessage(unix.NFT_MSG_DELTABLE, 0, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstring(table)},
	})
}

// getTableMessage asks for the table (not a dump); any socket may ask.
func getTableMessage(table string) (netlink.Message, error) {
	return nftMessage(unix.NFT_MSG_GETTABLE, 0, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstring(table)},
	})
}

// parseTableFlags reads NFTA_TABLE_FLAGS of a NFT_MSG_NEWTABLE message. The
// value is big endian, like every nf_tables integer attribute.
func parseTableFlags(m netlink.Message) (uint32, error) {
	if want := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE); m.Header.Type != want {
		return 0, fmt.Errorf("unexpected message type %#x, want %#x", m.Header.Type, want)
	}
	if len(m.Data) < 4 {
		return 0, errors.New("short nf_tables message")
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return 0, err
	}
	ad.ByteOrder = binary.BigEndian
	var flags uint32
	for ad.Next() {
		if ad.Type() == unix.NFTA_TABLE_FLAGS {
			flags = ad.Uint32()
		}
	}
	return flags, ad.Err()
}

// newChainMessage creates the base chain "out": type filter hook output
// priority -300, policy accept.
func newChainMessage(table string) (netlink.Message, error) {
	priority := int32(chainPriority) // sent as a two's complement be32
	hook, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_HOOK_HOOKNUM, Data: be32(unix.NF_INET_LOCAL_OUT)},
		{Type: unix.NFTA_HOOK_PRIORITY, Data: be32(uint32(priority))},
	})
	if err != nil {
		return netlink.Message{}, err
	}
	return nftMessage(unix.NFT_MSG_NEWCHAIN, netlink.Create, []netlink.Attribute{
		{Type: unix.NFTA_CHAIN_TABLE, Data: cstring(table)},
		{Type: unix.NFTA_CHAIN_NAME, Data: cstring(chainName)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: hook},
		{Type: unix.NFTA_CHAIN_POLICY, Data: be32(nfAccept)},
		{Type: unix.NFTA_CHAIN_TYPE, Data: cstring(chainType)},
	})
}

// newRuleMessage appends the rule dropping RSTs from local to remote to the
// chain. NLM_F_ECHO makes the kernel send the rule back with its handle.
func newRuleMessage(table string, local, remote netip.AddrPort) (netlink.Message, error) {
	exprs, err := ruleExprs(local, remote)
	if err != nil {
		return netlink.Message{}, err
	}
	return ruleMessage(table, exprs, fmt.Sprintf("tcpshake: drop kernel RST %v > %v", local, remote))
}

// newPortRuleMessage appends the rule dropping RSTs from a listening port
// (see portRuleExprs).
func newPortRuleMessage(table string, local netip.AddrPort) (netlink.Message, error) {
	exprs, err := portRuleExprs(local)
	if err != nil {
		return netlink.Message{}, err
	}
	return ruleMessage(table, exprs, fmt.Sprintf("tcpshake: drop kernel RST from listening port %v", local))
}

func ruleMessage(table string, exprs []expr.Any, comment string) (netlink.Message, error) {
	list := make([]netlink.Attribute, 0, len(exprs))
	for _, e := range exprs {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			return netlink.Message{}, fmt.Errorf("marshal expression %T: %w", e, err)
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	exprData, err := netlink.MarshalAttributes(list)
	if err != nil {
		return netlink.Message{}, err
	}
	return nftMessage(unix.NFT_MSG_NEWRULE, netlink.Create|netlink.Append|netlink.Echo, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(table)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstring(chainName)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: exprData},
		{Type: unix.NFTA_RULE_USERDATA, Data: userdata.AppendString(nil, userdata.TypeComment, comment)},
	})
}

// ruleSelector addresses one rule of the guard chain by handle, for
// NFT_MSG_DELRULE and NFT_MSG_GETRULE.
func ruleSelector(msgType int, table string, handle uint64) (netlink.Message, error) {
	return nftMessage(msgType, 0, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(table)},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstring(chainName)},
		{Type: unix.NFTA_RULE_HANDLE, Data: be64(handle)},
	})
}

// normalize checks one end of a tuple and unmaps IPv4-mapped IPv6 addresses,
// which leave the host as IPv4 packets.
func normalize(what string, ap netip.AddrPort) (netip.AddrPort, error) {
	a := ap.Addr().Unmap().WithZone("")
	switch {
	case !a.IsValid():
		return netip.AddrPort{}, fmt.Errorf("%s address is missing", what)
	case a.IsUnspecified():
		return netip.AddrPort{}, fmt.Errorf("%s address %v is unspecified", what, a)
	case ap.Port() == 0:
		return netip.AddrPort{}, fmt.Errorf("%s port is 0", what)
	}
	return netip.AddrPortFrom(a, ap.Port()), nil
}

// ruleExprs returns the expressions of the rule "meta nfproto F meta l4proto
// tcp ip[6] saddr L ip[6] daddr R tcp sport LP tcp dport RP tcp flags & rst !=
// 0 meta mark != Mark counter drop". The nfproto match must come first: in an inet table the
// network header may be either family, and reading IPv4 offsets from an IPv6
// header would match the wrong bytes.
func ruleExprs(local, remote netip.AddrPort) ([]expr.Any, error) {
	local, err := normalize("local", local)
	if err != nil {
		return nil, err
	}
	remote, err = normalize("remote", remote)
	if err != nil {
		return nil, err
	}
	if local.Addr().Is4() != remote.Addr().Is4() {
		return nil, errors.New("local and remote addresses are of different families")
	}
	return rstRule(local, remote), nil
}

// portRuleExprs returns the expressions of the rule for a listening port:
// RSTs from local's port (and from its address, unless that is unspecified:
// every address of both families) to anyone, "[meta nfproto F ip[6] saddr L]
// meta l4proto tcp tcp sport LP tcp flags & rst != 0 meta mark != Mark
// counter drop".
func portRuleExprs(local netip.AddrPort) ([]expr.Any, error) {
	a := local.Addr().Unmap().WithZone("")
	if local.Port() == 0 {
		return nil, errors.New("local port is 0")
	}
	if !a.IsValid() || a.IsUnspecified() {
		return rstRule(netip.AddrPortFrom(netip.Addr{}, local.Port()), netip.AddrPort{}), nil
	}
	return rstRule(netip.AddrPortFrom(a, local.Port()), netip.AddrPort{}), nil
}

// rstRule builds the drop rule; an invalid address or a zero port leaves
// its match out (an invalid local address also leaves out the family).
func rstRule(local, remote netip.AddrPort) []expr.Any {
	load := func(base expr.PayloadBase, off, n uint32) *expr.Payload {
		return &expr.Payload{DestRegister: unix.NFT_REG_1, Base: base, Offset: off, Len: n}
	}
	eq := func(data []byte) *expr.Cmp {
		return &expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: data}
	}
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

	var out []expr.Any
	if local.Addr().IsValid() {
		nfproto, srcOff, dstOff := byte(unix.NFPROTO_IPV4), uint32(ipv4SrcOffset), uint32(ipv4DstOffset)
		if local.Addr().Is6() {
			nfproto, srcOff, dstOff = unix.NFPROTO_IPV6, ipv6SrcOffset, ipv6DstOffset
		}
		src := local.Addr().AsSlice()
		out = append(out,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
			eq([]byte{nfproto}),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
			eq([]byte{unix.IPPROTO_TCP}),
			load(expr.PayloadBaseNetworkHeader, srcOff, uint32(len(src))),
			eq(src))
		if remote.Addr().IsValid() {
			dst := remote.Addr().AsSlice()
			out = append(out, load(expr.PayloadBaseNetworkHeader, dstOff, uint32(len(dst))), eq(dst))
		}
	} else {
		out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1}, eq([]byte{unix.IPPROTO_TCP}))
	}
	out = append(out, load(expr.PayloadBaseTransportHeader, tcpSportOffset, 2), eq(port(local.Port())))
	if remote.Port() != 0 {
		out = append(out, load(expr.PayloadBaseTransportHeader, tcpDportOffset, 2), eq(port(remote.Port())))
	}
	return append(out,
		load(expr.PayloadBaseTransportHeader, tcpFlagsOffset, 1),
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 1,
			Mask: []byte{tcpFlagRST}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: []byte{0}},
		// Segments tcpshake sends itself carry Mark and pass: its own RSTs are deliberate.
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: binary.NativeEndian.AppendUint32(nil, Mark)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

// parseRule reads the handle and the counter of a NFT_MSG_NEWRULE message
// from the kernel. hasCounter reports whether a counter expression was found.
func parseRule(m netlink.Message) (handle uint64, c expr.Counter, hasCounter bool, err error) {
	if want := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE); m.Header.Type != want {
		return 0, c, false, fmt.Errorf("unexpected message type %#x, want %#x", m.Header.Type, want)
	}
	if len(m.Data) < 4 {
		return 0, c, false, errors.New("short nf_tables message")
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return 0, c, false, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_HANDLE:
			handle = ad.Uint64()
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					list.Nested(func(e *netlink.AttributeDecoder) error {
						var name string
						for e.Next() {
							switch e.Type() {
							case unix.NFTA_EXPR_NAME:
								name = e.String()
							case unix.NFTA_EXPR_DATA:
								if name == "counter" {
									hasCounter = true
									return expr.Unmarshal(unix.NFPROTO_INET, e.Bytes(), &c)
								}
							}
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return 0, c, false, err
	}
	return handle, c, hasCounter, nil
}
