package probe

import (
	"strings"
	"testing"

	"tcpshake/craft"
)

func TestCookieFromOptions(t *testing.T) {
	synAck := func(o craft.SYNOptionSet) *craft.Segment {
		return &craft.Segment{Flags: craft.SYN | craft.ACK, Options: craft.SYNOptions(o)}
	}
	all := craft.SYNOptionSet{MSS: 1460, SACKOK: true, Timestamp: true, TSVal: 7, WScale: 7}
	noTS := craft.SYNOptionSet{MSS: 1460, SACKOK: true, WScale: 7}
	mssOnly := craft.SYNOptionSet{MSS: 1460, WScale: -1}
	for _, tc := range []struct {
		name      string
		withTS    *craft.Segment
		noTS      *craft.Segment
		want      CookieSign
		wantWords string
	}{
		// Linux with tcp_syncookies=2: everything with timestamps, MSS only without.
		{"cookie", synAck(all), synAck(mssOnly), CookieSeen, "without timestamps it carried [mss 1460]"},
		// Linux with state: window scale and SACK either way.
		{"state", synAck(all), synAck(noTS), CookieNoSign, "still carried window scale and SACK-permitted"},
		// lwIP: MSS only to everything: cannot tell.
		{"mss only always", synAck(mssOnly), synAck(mssOnly), CookieUndecided, "neither window scale nor SACK-permitted"},
		// Timestamps declined (tcp_timestamps=0): cannot look for a cookie in them.
		{"no timestamps", synAck(noTS), synAck(mssOnly), CookieUndecided, "no timestamps"},
		{"no answer", synAck(all), nil, CookieUndecided, "no SYN-ACK"},
		{"refused", synAck(all), &craft.Segment{Flags: craft.RST | craft.ACK}, CookieUndecided, "no SYN-ACK"},
		// SACK kept without timestamps, window scale dropped: state, not a cookie.
		{"sack kept", synAck(all), synAck(craft.SYNOptionSet{MSS: 1460, SACKOK: true, WScale: -1}), CookieNoSign, "SACK-permitted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CookieFromOptions(tc.withTS, tc.noTS)
			if got.Sign != tc.want || !strings.Contains(got.How, tc.wantWords) {
				t.Errorf("got %v %q, want %v with %q", got.Sign, got.How, tc.want, tc.wantWords)
			}
		})
	}
}
