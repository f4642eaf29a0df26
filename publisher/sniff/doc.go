// Package sniff is the passive way into the capture stage: it reads the
// legacy service's HTTP/1.1 traffic off a network interface (AF_PACKET, pure
// Go: github.com/gopacket/gopacket/pcapgo, no cgo, needs CAP_NET_RAW) or
// from a pcap file, reassembles each TCP connection
// (github.com/gopacket/gopacket/reassembly), parses requests and answers
// with net/http (keep-alive, pipelining, chunked bodies and trailers,
// compressed bodies kept as sent, as the tap keeps them) and pairs them in
// order. Each whole exchange goes through publisher.Capturer.See and
// Seen.Finish: the tap's routes, sampling, user keys, header stripping,
// body redaction, size caps and RequestEvent format, with source "sniff"
// (or "import" for pcap files).
//
// What cannot be followed is never published half: an exchange with a lost
// segment, a connection open before capture started (no SYN seen), TLS,
// HTTP/2 and other bytes are counted in shadowcube_sniff_dropped_total by
// reason (see the Reason constants) and skipped.
package sniff
