package ipam

import "testing"

// Requests from three hosts handled as one batch: three donations, each
// persisted before its reply leaves, with one save for all of them (the
// agent's worker batches what memberlist delivers; issue 14: no fsync per
// message, none on memberlist's goroutines).
func TestBatchSavesOnce(t *testing.T) {
	c := newClock()
	b := newBus()
	h1 := b.open(t, "h1", c, hostOpts{seed: true})
	var others []*Allocator
	for _, n := range []string{"h2", "h3", "h4"} {
		others = append(others, b.open(t, n, c, hostOpts{}))
	}
	b.peersChanged()
	b.sync(t)
	for i, o := range others {
		if _, _, err := o.attempt(Request{ID: "c", IfName: "eth0"}); err == nil {
			t.Fatalf("host %d allocated without a block", i)
		}
	}
	b.mu.Lock()
	var batch []Message
	var rest []busMsg
	for _, m := range b.queue {
		if m.to == "h1" {
			batch = append(batch, Message{From: m.from, Payload: m.payload})
		} else {
			rest = append(rest, m)
		}
	}
	b.queue = rest
	b.mu.Unlock()
	if len(batch) != 3 {
		t.Fatalf("%d requests queued for h1, want 3", len(batch))
	}
	before, owned := h1.saves, len(h1.OwnedBlocks("h1"))
	if err := h1.HandleMessages(batch); err != nil {
		t.Fatal(err)
	}
	if got := len(h1.OwnedBlocks("h1")); got != owned-3 {
		t.Fatalf("h1 owns %d blocks after the batch, want %d (three donations)", got, owned-3)
	}
	if n := h1.saves - before; n != 1 {
		t.Errorf("the batch of three donations saved %d times, want once", n)
	}
	b.pump(t)
	for _, o := range others {
		mustAlloc(t, b, o, c, "c")
	}
}
