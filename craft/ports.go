package craft

import (
	"fmt"
	"strconv"
	"strings"
)

// maxPortCount bounds how many ports a list may name, counting repeats, so that a list like
// "1-65535,1-65535,..." cannot make ParsePorts work for long.
const maxPortCount = 65535

// ParsePorts parses a port list such as "80", "22,80,443", "1000-1010" or "22,80-82". Ports run from 1 to
// 65535; spaces around items are allowed; duplicates are removed, keeping the order in which ports first
// appear. It fails on an empty list or item, a port out of range ("0", "65536"), a range missing an end
// ("1-", "-5"), a reversed range ("80-20"), anything that is not a number ("abc"), and a list naming more
// than 65535 ports when repeats are counted.
func ParsePorts(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("craft: parse ports: empty port list")
	}
	var seen [65536 / 64]uint64
	var ports []uint16
	count := 0
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("craft: parse ports %q: empty item", s)
		}
		lo, hi, err := parsePortRange(item)
		if err != nil {
			return nil, fmt.Errorf("craft: parse ports %q: %w", s, err)
		}
		count += int(hi-lo) + 1
		if count > maxPortCount {
			return nil, fmt.Errorf("craft: parse ports %q: more than %d ports", s, maxPortCount)
		}
		for p := int(lo); p <= int(hi); p++ {
			if seen[p/64]&(1<<(p%64)) != 0 {
				continue
			}
			seen[p/64] |= 1 << (p % 64)
			ports = append(ports, uint16(p))
		}
	}
	return ports, nil
}

// parsePortRange parses "N" or "N-M".
func parsePortRange(item string) (lo, hi uint16, err error) {
	first, last, isRange := strings.Cut(item, "-")
	if !isRange {
		p, err := parsePort(item)
		return p, p, err
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	switch {
	case first == "":
		return 0, 0, fmt.Errorf("range %q has no start", item)
	case last == "":
		return 0, 0, fmt.Errorf("range %q has no end", item)
	}
	if lo, err = parsePort(first); err != nil {
		return 0, 0, err
	}
	if hi, err = parsePort(last); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("range %q is reversed: %d > %d", item, lo, hi)
	}
	return lo, hi, nil
}

// parsePort parses one decimal port from 1 to 65535.
func parsePort(s string) (uint16, error) {
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a port number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s out of range 1-65535", s)
	}
	return uint16(n), nil
}
