package analyze

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// readBufSize is the read-ahead of the file: large reads keep the decode loop busy.
const readBufSize = 256 << 10

// Magic numbers of the file formats, as the first four bytes read little-endian.
const (
	magicPcapngSHB = 0x0a0d0d0a // pcapng section header block (the same in both byte orders)
	magicGzip      = 0x8b1f     // first two bytes of a gzip stream
	magicZstd      = 0xfd2fb528 // a zstd frame (RFC 8878 §3.1.1)
	magicXZ        = 0x587a37fd // "\xfd7zXZ", the first four bytes of an xz stream
)

// Link types the reader understands besides those named in package layers: DLT_RAW as BSD numbers it (12 on
// most systems, 14 on OpenBSD).
const (
	linkTypeRawBSD     layers.LinkType = 12
	linkTypeRawOpenBSD layers.LinkType = 14
)

// Reader reads packets from a pcap or pcapng file (optionally gzip-compressed) and returns each one's IP packet
// with its link header stripped. It reuses its buffers: the data Next returns is valid until the next call.
type Reader struct {
	format string // "pcap" or "pcapng"
	pcap   *pcapgo.Reader
	ng     *pcapgo.NgReader
	link   layers.LinkType // of the pcap file, or of the pcapng file's first interface
}

// NewReader detects the format of r by its magic number and reads the file header. A gzip, zstd or xz stream is
// uncompressed on the fly first, as tshark does.
func NewReader(r io.Reader) (*Reader, error) { return newReader(r, 0) }

// newReader is NewReader; limit, when not 0, bounds how many uncompressed bytes a compressed file may give (the
// fuzz test's guard against decompression bombs, which would only make it slow).
func newReader(r io.Reader, limit int64) (*Reader, error) {
	br, err := uncompressed(bufio.NewReaderSize(r, readBufSize), limit)
	if err != nil {
		return nil, err
	}
	magic, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("analyze: read file header: empty or too short for a capture file")
		}
		return nil, fmt.Errorf("analyze: read file header: %w", err)
	}
	if binary.LittleEndian.Uint32(magic) == magicPcapngSHB {
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, fmt.Errorf("analyze: read pcapng header: %w", fileErr(err))
		}
		return &Reader{format: "pcapng", ng: ng, link: ng.LinkType()}, nil
	}
	p, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("analyze: read pcap header: %w (not a pcap or pcapng file?)", fileErr(err))
	}
	return &Reader{format: "pcap", pcap: p, link: p.LinkType()}, nil
}

// uncompressed returns br, or a reader of its uncompressed content when it starts with the magic number of a gzip,
// zstd or xz stream.
func uncompressed(br *bufio.Reader, limit int64) (*bufio.Reader, error) {
	magic, err := br.Peek(4)
	if err != nil {
		return br, nil // too short for any compressed stream: the capture header check says why
	}
	var zr io.Reader
	switch {
	case binary.LittleEndian.Uint16(magic) == magicGzip:
		g, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("analyze: open gzip: %w", err)
		}
		zr = g
	case binary.LittleEndian.Uint32(magic) == magicZstd:
		// libzstd's default limit on the window (2^27 bytes) bounds the memory a frame may ask for.
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(1<<27), zstd.WithDecoderMaxMemory(1<<31))
		if err != nil {
			return nil, fmt.Errorf("analyze: open zstd: %w", err)
		}
		zr = z.IOReadCloser()
	case binary.LittleEndian.Uint32(magic) == magicXZ:
		x, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("analyze: open xz: %w", err)
		}
		zr = x
	default:
		return br, nil
	}
	if limit > 0 {
		zr = io.LimitReader(zr, limit)
	}
	return bufio.NewReaderSize(zr, readBufSize), nil
}

// Format is "pcap" or "pcapng".
func (r *Reader) Format() string { return r.format }

// LinkType is the link type of the pcap file or of the pcapng file's first interface (known once the first
// packet was read).
func (r *Reader) LinkType() layers.LinkType {
	if r.ng != nil && r.ng.NInterfaces() > 0 {
		if intf, err := r.ng.Interface(0); err == nil {
			return intf.LinkType
		}
	}
	return r.link
}

// Next reads the next packet record. ip is its IP packet (nil when the record carries something else, such as
// ARP or a link type the reader does not know); ci is the record's capture info (ci.Length is the frame's length
// on the wire). At the end of the file Next returns io.EOF; a file that ends inside a record or holds a record
// that cannot be valid returns another error.
func (r *Reader) Next() (ip []byte, ci gopacket.CaptureInfo, err error) {
	frame, link, ci, err := r.NextFrame()
	if err != nil {
		return nil, ci, err
	}
	return StripLink(link, frame), ci, nil
}

// NextFrame is Next without the link header stripped: the whole frame and its link type.
func (r *Reader) NextFrame() (frame []byte, link layers.LinkType, ci gopacket.CaptureInfo, err error) {
	link = r.link
	if r.ng != nil {
		frame, ci, err = r.ng.ZeroCopyReadPacketData()
		if err == nil && len(ci.AncillaryData) > 0 {
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				link = lt
			}
		}
	} else {
		frame, ci, err = r.pcap.ZeroCopyReadPacketData()
	}
	if err != nil {
		if err == io.EOF {
			return nil, link, ci, io.EOF
		}
		return nil, link, ci, fileErr(err)
	}
	return frame, link, ci, nil
}

// fileErr names a file that ends too early as truncated.
func fileErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("file truncated in the middle of a record")
	}
	return err
}

// StripLink returns the IP packet inside one frame of the given link type, or nil when the frame does not carry
// IPv4 or IPv6 (or is too short to tell). It understands Ethernet with any number of 802.1Q/802.1ad VLAN tags,
// Linux cooked capture v1 (SLL) and v2 (SLL2), raw IP (101, 12, 14, 228, 229) and BSD loopback (NULL and LOOP).
// It does not allocate.
func StripLink(link layers.LinkType, b []byte) []byte {
	var ethertype uint16
	switch link {
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return nil
		}
		ethertype, b = binary.BigEndian.Uint16(b[12:]), b[14:]
		for ethertype == 0x8100 || ethertype == 0x88a8 || ethertype == 0x9100 {
			if len(b) < 4 {
				return nil
			}
			ethertype, b = binary.BigEndian.Uint16(b[2:]), b[4:]
		}
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return nil
		}
		ethertype, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return nil
		}
		ethertype, b = binary.BigEndian.Uint16(b[0:]), b[20:]
	case layers.LinkTypeRaw, linkTypeRawBSD, linkTypeRawOpenBSD, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return ipOnly(b)
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		// The 4-byte address family is in the capturing host's byte order (NULL) or big-endian (LOOP), and
		// IPv6's value differs between systems: the version nibble decides.
		if len(b) < 4 {
			return nil
		}
		return ipOnly(b[4:])
	default:
		return nil
	}
	switch ethertype {
	case 0x0800, 0x86dd:
		return ipOnly(b)
	}
	return nil
}

// ipOnly returns b when it starts like an IPv4 or IPv6 header.
func ipOnly(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if v := b[0] >> 4; v != 4 && v != 6 {
		return nil
	}
	return b
}

// linkName names a link type the way the summary shows it.
func linkName(lt layers.LinkType) string {
	switch lt {
	case layers.LinkTypeEthernet:
		return "Ethernet"
	case layers.LinkTypeLinuxSLL:
		return "Linux SLL"
	case layers.LinkTypeLinuxSLL2:
		return "Linux SLL2"
	case layers.LinkTypeRaw, linkTypeRawBSD, linkTypeRawOpenBSD:
		return "Raw IP"
	case layers.LinkTypeIPv4:
		return "Raw IPv4"
	case layers.LinkTypeIPv6:
		return "Raw IPv6"
	case layers.LinkTypeNull:
		return "BSD loopback (NULL)"
	case layers.LinkTypeLoop:
		return "OpenBSD loopback (LOOP)"
	}
	if linkKnown(lt) {
		return fmt.Sprintf("%s (%d)", lt, int(lt)) // decoded through gopacket's layers
	}
	return fmt.Sprintf("unsupported (%d)", int(lt))
}
