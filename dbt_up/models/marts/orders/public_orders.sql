with

orders as (

    select * from {{ ref('stg_orders') }}

),

order_payments as (

    select * from {{ ref('int_order_payments') }}

),

joined as (

    select
        orders.order_id,
        orders.customer_id,
        orders.order_date,
        orders.status,
        coalesce(order_payments.net_amount, 0) as amount,
        coalesce(order_payments.payment_count, 0) as payment_count,
        coalesce(order_payments.has_refund, false) or orders.status = 'returned' as is_refunded

    from orders

    left join order_payments
        on orders.order_id = order_payments.order_id

),

final as (

    select
        cast(order_id as integer) as order_id,
        cast(customer_id as integer) as customer_id,
        cast(order_date as date) as order_date,
        cast(status as varchar) as status,
        cast(amount as decimal(18, 2)) as amount,
        cast(payment_count as integer) as payment_count,
        cast(is_refunded as boolean) as is_refunded

    from joined

)

select * from final
