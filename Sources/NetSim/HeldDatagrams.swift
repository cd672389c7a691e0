/// Fixed memory for datagrams the relay holds back: 2 KiB slots for ordinary datagrams and a
/// few 64 KiB slots for large ones. Slots are numbered; small ones first.
final class BufferPool {
    static let smallSize = 2048
    static let largeSize = 65536
    let smallCount: Int
    let largeCount: Int
    private let small: UnsafeMutableRawPointer
    private let large: UnsafeMutableRawPointer
    private let freeSmall: UnsafeMutablePointer<Int32>
    private let freeLarge: UnsafeMutablePointer<Int32>
    private var freeSmallCount: Int
    private var freeLargeCount: Int

    init(smallCount: Int, largeCount: Int) {
        self.smallCount = smallCount
        self.largeCount = largeCount
        small = .allocate(byteCount: smallCount * Self.smallSize, alignment: 16)
        large = .allocate(byteCount: max(1, largeCount) * Self.largeSize, alignment: 16)
        freeSmall = .allocate(capacity: smallCount)
        freeLarge = .allocate(capacity: max(1, largeCount))
        // Stacks, lowest slot on top, so the memory touched stays small.
        for i in 0..<smallCount { freeSmall[i] = Int32(smallCount - 1 - i) }
        for i in 0..<largeCount { freeLarge[i] = Int32(smallCount + largeCount - 1 - i) }
        freeSmallCount = smallCount
        freeLargeCount = largeCount
    }

    deinit {
        small.deallocate()
        large.deallocate()
        freeSmall.deallocate()
        freeLarge.deallocate()
    }

    var slotCount: Int { smallCount + largeCount }

    /// A free slot that holds `length` bytes, or nil when none is left.
    func acquire(length: Int) -> Int32? {
        if length <= Self.smallSize, freeSmallCount > 0 {
            freeSmallCount -= 1
            return freeSmall[freeSmallCount]
        }
        if freeLargeCount > 0 {
            freeLargeCount -= 1
            return freeLarge[freeLargeCount]
        }
        return nil
    }

    func release(_ slot: Int32) {
        if Int(slot) < smallCount {
            freeSmall[freeSmallCount] = slot
            freeSmallCount += 1
        } else {
            freeLarge[freeLargeCount] = slot
            freeLargeCount += 1
        }
    }

    func bytes(_ slot: Int32) -> UnsafeMutableRawPointer {
        let slot = Int(slot)
        if slot < smallCount {
            return small + slot * Self.smallSize
        }
        return large + (slot - smallCount) * Self.largeSize
    }
}

/// A datagram waiting in a pool slot for its departure time.
struct HeldDatagram {
    var deliverAt: UInt64
    var sequence: UInt64
    var slot: Int32
    var length: Int32
    var trafficClass: UInt8

    func departsBefore(_ other: HeldDatagram) -> Bool {
        deliverAt != other.deliverAt ? deliverAt < other.deliverAt : sequence < other.sequence
    }
}

/// A binary min-heap of held datagrams by departure time, then arrival order, in fixed memory
/// (one entry per pool slot at most).
final class DepartureQueue {
    private let entries: UnsafeMutablePointer<HeldDatagram>
    let capacity: Int
    private(set) var count = 0
    private var nextSequence: UInt64 = 0

    init(capacity: Int) {
        self.capacity = capacity
        entries = .allocate(capacity: max(1, capacity))
    }

    deinit {
        entries.deallocate()
    }

    var isEmpty: Bool { count == 0 }
    var first: HeldDatagram? { count > 0 ? entries[0] : nil }

    func push(deliverAt: UInt64, slot: Int32, length: Int, trafficClass: UInt8) {
        guard count < capacity else { return }
        var i = count
        entries.advanced(by: i).initialize(to: HeldDatagram(
            deliverAt: deliverAt, sequence: nextSequence, slot: slot, length: Int32(length),
            trafficClass: trafficClass))
        nextSequence += 1
        count += 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard entries[i].departsBefore(entries[parent]) else { break }
            entries.swapAt(i, parent)
            i = parent
        }
    }

    func popFirst() -> HeldDatagram? {
        guard count > 0 else { return nil }
        let top = entries[0]
        count -= 1
        entries[0] = entries[count]
        var i = 0
        while true {
            let left = 2 * i + 1
            let right = left + 1
            var smallest = i
            if left < count, entries[left].departsBefore(entries[smallest]) { smallest = left }
            if right < count, entries[right].departsBefore(entries[smallest]) { smallest = right }
            if smallest == i { break }
            entries.swapAt(i, smallest)
            i = smallest
        }
        return top
    }
}

extension UnsafeMutablePointer {
    fileprivate func swapAt(_ a: Int, _ b: Int) {
        let t = self[a]
        self[a] = self[b]
        self[b] = t
    }
}
