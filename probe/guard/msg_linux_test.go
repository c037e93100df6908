package guard

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// describe renders expressions in the style of "nft --debug=netlink", so the
// wanted rules below read like the kernel's own listing.
func describe(t *testing.T, exprs []expr.Any) []string {
	t.Helper()
	base := map[expr.PayloadBase]string{
		expr.PayloadBaseNetworkHeader:   "network",
		expr.PayloadBaseTransportHeader: "transport",
	}
	var out []string
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			names := map[expr.MetaKey]string{expr.MetaKeyNFPROTO: "nfproto", expr.MetaKeyL4PROTO: "l4proto", expr.MetaKeyMARK: "mark"}
			out = append(out, fmt.Sprintf("meta load %s => reg %d", names[e.Key], e.Register))
		case *expr.Cmp:
			op := map[expr.CmpOp]string{expr.CmpOpEq: "eq", expr.CmpOpNeq: "neq"}[e.Op]
			out = append(out, fmt.Sprintf("cmp %s reg %d 0x%x", op, e.Register, e.Data))
		case *expr.Payload:
			out = append(out, fmt.Sprintf("payload load %db @ %s header + %d => reg %d",
				e.Len, base[e.Base], e.Offset, e.DestRegister))
		case *expr.Bitwise:
			out = append(out, fmt.Sprintf("bitwise reg %d = ( reg %d & 0x%x ) ^ 0x%x",
				e.DestRegister, e.SourceRegister, e.Mask, e.Xor))
		case *expr.Counter:
			out = append(out, "counter")
		case *expr.Verdict:
			if e.Kind != expr.VerdictDrop {
				t.Fatalf("verdict %v, want drop", e.Kind)
			}
			out = append(out, "immediate reg 0 drop")
		default:
			t.Fatalf("unexpected expression %T", e)
		}
	}
	return out
}

func TestRuleExprs(t *testing.T) {
	tail := []string{
		"payload load 1b @ transport header + 13 => reg 1",
		"bitwise reg 1 = ( reg 1 & 0x04 ) ^ 0x00",
		"cmp neq reg 1 0x00",
		"meta load mark => reg 1",
		fmt.Sprintf("cmp neq reg 1 0x%x", binary.NativeEndian.AppendUint32(nil, Mark)),
		"counter",
		"immediate reg 0 drop",
	}
	v4 := append([]string{
		"meta load nfproto => reg 1",
		"cmp eq reg 1 0x02",
		"meta load l4proto => reg 1",
		"cmp eq reg 1 0x06",
		"payload load 4b @ network header + 12 => reg 1",
		"cmp eq reg 1 0xc6336401",
		"payload load 4b @ network header + 16 => reg 1",
		"cmp eq reg 1 0xc6336402",
		"payload load 2b @ transport header + 0 => reg 1",
		"cmp eq reg 1 0x9c40",
		"payload load 2b @ transport header + 2 => reg 1",
		"cmp eq reg 1 0x0016",
	}, tail...)
	v6 := append([]string{
		"meta load nfproto => reg 1",
		"cmp eq reg 1 0x0a",
		"meta load l4proto => reg 1",
		"cmp eq reg 1 0x06",
		"payload load 16b @ network header + 8 => reg 1",
		"cmp eq reg 1 0x20010db8000000000000000000000001",
		"payload load 16b @ network header + 24 => reg 1",
		"cmp eq reg 1 0x20010db8000000000000000000000002",
		"payload load 2b @ transport header + 0 => reg 1",
		"cmp eq reg 1 0x9c40",
		"payload load 2b @ transport header + 2 => reg 1",
		"cmp eq reg 1 0x0016",
	}, tail...)

	tests := []struct {
		name          string
		local, remote string
		want          []string
	}{
		{name: "ipv4", local: "198.51.100.1:40000", remote: "198.51.100.2:22", want: v4},
		{name: "ipv4-mapped is ipv4", local: "[::ffff:198.51.100.1]:40000", remote: "198.51.100.2:22", want: v4},
		{name: "ipv6", local: "[2001:db8::1]:40000", remote: "[2001:db8::2]:22", want: v6},
		{name: "ipv6 zone ignored", local: "[2001:db8::1%eth0]:40000", remote: "[2001:db8::2]:22", want: v6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exprs, err := ruleExprs(netip.MustParseAddrPort(tt.local), netip.MustParseAddrPort(tt.remote))
			if err != nil {
				t.Fatalf("ruleExprs: %v", err)
			}
			if diff := cmp.Diff(tt.want, describe(t, exprs)); diff != "" {
				t.Errorf("rule (-want +got):\n%s", diff)
			}
			for _, e := range exprs {
				if _, err := expr.Marshal(unix.NFPROTO_INET, e); err != nil {
					t.Errorf("marshal %T: %v", e, err)
				}
			}
		})
	}
}

func TestRuleExprsRejects(t *testing.T) {
	tests := []struct {
		name          string
		local, remote netip.AddrPort
		wantErr       string
	}{
		{
			name:    "mixed families",
			local:   netip.MustParseAddrPort("127.0.0.1:1"),
			remote:  netip.MustParseAddrPort("[::1]:2"),
			wantErr: "different families",
		},
		{
			name:    "missing local",
			remote:  netip.MustParseAddrPort("127.0.0.1:2"),
			wantErr: "local address is missing",
		},
		{
			name:    "unspecified remote",
			local:   netip.MustParseAddrPort("127.0.0.1:1"),
			remote:  netip.MustParseAddrPort("0.0.0.0:2"),
			wantErr: "remote address 0.0.0.0 is unspecified",
		},
		{
			name:    "zero port",
			local:   netip.MustParseAddrPort("[::1]:0"),
			remote:  netip.MustParseAddrPort("[::1]:2"),
			wantErr: "local port is 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ruleExprs(tt.local, tt.remote)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ruleExprs(%v, %v) error = %v, want it to contain %q", tt.local, tt.remote, err, tt.wantErr)
			}
		})
	}
}

func TestParseRule(t *testing.T) {
	// A rule as the kernel echoes or lists it: table, chain, handle and the
	// expressions, one of which is the counter.
	elem := func(e expr.Any) netlink.Attribute {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			t.Fatal(err)
		}
		return netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b}
	}
	list, err := netlink.MarshalAttributes([]netlink.Attribute{
		elem(&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1}),
		elem(&expr.Counter{Bytes: 180, Packets: 3}),
		elem(&expr.Verdict{Kind: expr.VerdictDrop}),
	})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nftMessage(unix.NFT_MSG_NEWRULE, 0, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring("tcpshake_1")},
		{Type: unix.NFTA_RULE_CHAIN, Data: cstring(chainName)},
		{Type: unix.NFTA_RULE_HANDLE, Data: be64(42)},
		{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: list},
	})
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		Handle, Packets, Bytes uint64
		HasCounter             bool
	}
	handle, c, ok, err := parseRule(msg)
	if err != nil {
		t.Fatalf("parseRule: %v", err)
	}
	want := result{Handle: 42, Packets: 3, Bytes: 180, HasCounter: true}
	if diff := cmp.Diff(want, result{handle, c.Packets, c.Bytes, ok}); diff != "" {
		t.Errorf("parseRule (-want +got):\n%s", diff)
	}

	msg.Header.Type = netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE)
	if _, _, _, err := parseRule(msg); err == nil {
		t.Error("parseRule accepted a NEWTABLE message")
	}
}
