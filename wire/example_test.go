package wire_test

import (
	"fmt"

	"ftkv/wire"
)

func Example() {
	req := wire.Frame{Op: wire.OpPut, ID: 1, Epoch: 3, Key: []byte("greeting"), Value: []byte("hello")}
	buf := wire.Append(nil, &req)

	// A stream reader calls Decode on whatever it has buffered; n == 0 with a
	// nil error means "read more".
	_, n, err := wire.Decode(buf[:10], 0)
	fmt.Println("partial:", n, err)

	f, n, err := wire.Decode(buf, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println("consumed:", n, "of", len(buf))
	fmt.Printf("%v id=%d epoch=%d key=%q value=%q\n", f.Op, f.ID, f.Epoch, f.Key, f.Value)
	// Output:
	// partial: 0 <nil>
	// consumed: 73 of 73
	// PUT id=1 epoch=3 key="greeting" value="hello"
}
