package sandbox

import "testing"

func TestParseNetDev(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0: 1234567    890    1    2    0     0          0         0   765432     321    3    4    0     0       0          0
`
	got := parseNetDev([]byte(in))
	want := []Interface{{Name: "lo", RxBytes: 840, RxPackets: 10, TxBytes: 840, TxPackets: 10},
		{Name: "eth0", RxBytes: 1234567, RxPackets: 890, RxErrors: 1, RxDrops: 2, TxBytes: 765432, TxPackets: 321, TxErrors: 3, TxDrops: 4}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
