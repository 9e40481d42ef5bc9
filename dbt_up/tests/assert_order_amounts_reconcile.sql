-- The net amount of all orders in public_orders must equal the sum of every
-- payment event (refunds included) in staging: no payment lost or counted twice.
-- Returns a row (= failure) when the totals differ.

with

orders_total as (

    select coalesce(sum(amount), 0) as total from {{ ref('public_orders') }}

),

payments_total as (

    select coalesce(sum(amount), 0) as total from {{ ref('stg_payments') }}

),

revenue_total as (

    select coalesce(sum(net_revenue), 0) as total from {{ ref('public_daily_revenue') }}

)

select
    orders_total.total as orders_total,
    payments_total.total as payments_total,
    revenue_total.total as revenue_total

from orders_total
cross join payments_total
cross join revenue_total

where orders_total.total != payments_total.total
    or revenue_total.total != payments_total.total
