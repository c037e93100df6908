package capture

import (
	"fmt"
	"io"
	"runtime"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// PcapngWriter writes [Frame]s to a pcapng file: one section, one interface of link type RAW (LINKTYPE_RAW 101,
// the packet starts at its IP header) with nanosecond timestamps, and one Enhanced Packet Block per frame carrying
// the frame's timestamp, its direction (the EPB flags' inbound/outbound bits) and an optional comment, which
// Wireshark shows as frame.comment (pkt_comment before Wireshark 3.6). It is not safe for concurrent use.
type PcapngWriter struct {
	w *pcapgo.NgWriter
}

// NewPcapngWriter writes the section header and the interface description for an interface called ifname to w
// and returns a writer for the frames. Nothing reaches w before the first Flush unless the internal buffer fills.
func NewPcapngWriter(w io.Writer, ifname string) (*PcapngWriter, error) {
	if ifname == "" {
		ifname = "tcpshake"
	}
	intf := pcapgo.NgInterface{
		Name:                ifname,
		Description:         "IP packets sent and received by tcpshake",
		OS:                  runtime.GOOS,
		LinkType:            layers.LinkTypeRaw,
		TimestampResolution: 9,
		SnapLength:          0,
	}
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "tcpshake",
	}}
	nw, err := pcapgo.NewNgWriterInterface(w, intf, opts)
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng header: %w", err)
	}
	return &PcapngWriter{w: nw}, nil
}

// Write appends f as one packet with comment (none when empty). f.Outgoing sets the EPB direction to outbound,
// otherwise inbound. The frame's data is copied out before Write returns.
func (p *PcapngWriter) Write(f Frame, comment string) error {
	dir := pcapgo.NgEpbFlagDirectionInbound
	if f.Outgoing {
		dir = pcapgo.NgEpbFlagDirectionOutbound
	}
	flags := pcapgo.NgEpbFlags{Direction: dir}
	opts := pcapgo.NgPacketOptions{Flags: &flags}
	if comment != "" {
		opts.Comments = []string{comment}
	}
	ci := gopacket.CaptureInfo{Timestamp: f.Time, CaptureLength: len(f.Data), Length: len(f.Data)}
	if err := p.w.WritePacketWithOptions(ci, f.Data, opts); err != nil {
		return fmt.Errorf("capture: pcapng write: %w", err)
	}
	return nil
}

// Flush writes any buffered data to the underlying writer. Call it before closing the file.
func (p *PcapngWriter) Flush() error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("capture: pcapng flush: %w", err)
	}
	return nil
}
