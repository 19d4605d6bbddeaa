// The facade's roles, each allowed what the one before it is: user < operator < admin.
const RANK = { user: 0, operator: 1, admin: 2 };

// Whether the signed-in caller (GET /api/v1/me: {user, role}) has `role` or a higher one.
export const atLeast = (me, role) => (RANK[me && me.role] ?? -1) >= RANK[role];
