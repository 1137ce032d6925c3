package ipam

import (
	"fmt"
	"os"
	"strconv"
)

// traceBlock logs every change of one block's entry in every running
// agent's view (FLATMESH_SIM_TRACE=block index), for debugging.
func (s *sim) traceBlock() {
	b, err := strconv.Atoi(os.Getenv("FLATMESH_SIM_TRACE"))
	if err != nil {
		return
	}
	if s.traced == nil {
		s.traced = map[string]string{}
	}
	for _, h := range s.up() {
		e := fmt.Sprintf("%+v", h.a.v.blocks[b])
		if s.traced[h.name] != e {
			s.traced[h.name] = e
			s.logf("TRACE %s sees block %d = %s", h.name, b, e)
		}
	}
}
