package proxy

import (
	"net/netip"

	"github.com/unstuck-dev/unstuck/internal/proxyproto"
)

// proxyHeader is the PROXY v2 header that opens a connection to u when u
// wants one (UpstreamOptions.SendProxy), or nil: the client as the engine
// knows it (from a PROXY header in front, or the socket) and the address
// it connected to.
func (cc *clientConn) proxyHeader(u *Upstream) []byte {
	if !u.sendProxy {
		return nil
	}
	src := netip.AddrPortFrom(cc.req.peer, cc.peerPort)
	cc.proxyHdr = proxyproto.AppendV2(cc.proxyHdr[:0], src, cc.local)
	return cc.proxyHdr
}
